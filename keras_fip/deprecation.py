"""Renamed arguments and attributes: the old names, kept for one release.

A public name that changes keeps working for one release: a call with the
old keyword gets the new argument and a `DeprecationWarning` that names
both, pointed at the caller's line; reading an old attribute name warns
the same way. A config saved by an earlier release (a `.keras` file) still
loads: `upgrade_config` maps its old keys to the new names without a
warning, since re-saving the file is the only fix a user has.

Example:

```python
import warnings
from keras_fip.deprecation import renamed_arguments

class Term:
    @renamed_arguments(strength="weight", since="0.6")
    def __init__(self, weight=1.0):
        self.weight = weight

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    assert Term(strength=2.0).weight == 2.0
assert "`strength` is deprecated" in str(caught[0].message)
```
"""

import functools
import inspect
import warnings

#: The attribute a decorated function keeps its `{old: new}` renames in.
RENAMES = "_keras_fip_renamed_arguments"


def renamed_arguments(since, **renames):
    """Decorates a function so it accepts old keyword names, with a warning.

    Each `old="new"` pair maps the keyword `old` onto the argument `new`.
    Passing both (by keyword, or `new` by position) raises `TypeError`;
    the signature (`inspect.signature`) stays the new one.

    Args:
        since: the release that renamed them (`"0.6"`), for the message.
        **renames: `old_name="new_name"` pairs.

    Returns:
        A decorator.
    """

    def decorate(function):
        parameters = list(inspect.signature(function).parameters)
        for new in renames.values():
            if new not in parameters:
                raise ValueError(f"{function.__qualname__} has no argument "
                                 f"{new!r} to rename to.")

        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            for old, new in renames.items():
                if old not in kwargs:
                    continue
                given_by_position = parameters.index(new) < len(args)
                if new in kwargs or given_by_position:
                    raise TypeError(
                        f"{function.__qualname__} got both `{new}` and its "
                        f"deprecated name `{old}`: pass `{new}` only.")
                warnings.warn(
                    f"`{old}` is deprecated since keras_fip {since} and "
                    f"will be removed in the next release: pass `{new}` to "
                    f"{function.__qualname__.split('.')[0]} instead.",
                    DeprecationWarning, stacklevel=2)
                kwargs[new] = kwargs.pop(old)
            return function(*args, **kwargs)

        setattr(wrapper, RENAMES, dict(renames))
        return wrapper

    return decorate


def upgrade_config(cls, config):
    """`config` with the keys `cls.__init__` renamed mapped to new names.

    For `from_config` of a config saved before the rename (a `.keras` file
    of an earlier release): no warning, and a key already under its new
    name wins.

    Args:
        cls: the class whose `__init__` may carry `renamed_arguments`.
        config: the config dict (not modified).

    Returns:
        A new dict.
    """
    renames = getattr(cls.__init__, RENAMES, {})
    config = dict(config)
    for old, new in renames.items():
        if old in config:
            value = config.pop(old)
            config.setdefault(new, value)
    return config


def renamed_attribute(old, new, since):
    """A property `old` that reads attribute `new`, with a warning.

    Args:
        old: the attribute's former name (for the message).
        new: the attribute it now reads.
        since: the release that renamed it.

    Returns:
        A read-only `property`.
    """

    def read(self):
        warnings.warn(
            f"`{type(self).__name__}.{old}` is deprecated since keras_fip "
            f"{since} and will be removed in the next release: read "
            f"`.{new}` instead.", DeprecationWarning, stacklevel=2)
        return getattr(self, new)

    return property(read, doc=f"Deprecated alias of `{new}`.")
