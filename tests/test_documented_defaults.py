"""The defaults the presets' and terms' docstrings state are the real ones.

Each argument with a default (a number, string or boolean) must say it in
its docstring's `Args:` entry ("(default 0.3)", "Default 0.3", "Defaults
to 0.3", or "`"sum"` (default)"), and what it says must be the signature's
default.
"""

import ast
import inspect
import re

import pytest

import keras_fip
from keras_fip import baselines
from keras_fip import sparsity
from keras_fip import terms

PRESETS = [keras_fip.FIPOptimizer] + [
    getattr(baselines, name) for name in baselines.__all__
    if name.endswith("Optimizer")]
TERMS = [getattr(terms, name) for name in terms.__all__
         if name not in ("DirectionTerm", "MemoryTerm", "PathStartTerm")] + [
    getattr(baselines, name) for name in baselines.__all__
    if name.endswith("Term")] + [sparsity.SparseTarget]

# "`x` (default)", "`x` (…, default)", "`x` … (default: …)"; else
# "(default x", "default x", "Default x", "Defaults to x".
_BACKTICKED_BEFORE = re.compile(
    r"`([^`]+)`[^`(]{0,60}\([^()`]*?\bdefault\s*[):,;]")
_STATED = re.compile(
    r"\b[Dd]efaults?(?:\s+to|\s+is)?\s+(`[^`]+`|[-+]?[\w.]+(?:[-+]\d+)?)")


def args_section(docstring):
    """`{argument: its description}` from a Google-style `Args:` block."""
    lines = inspect.cleandoc(docstring).splitlines()
    entries, name, indent = {}, None, None
    for line in lines[lines.index("Args:") + 1:] if "Args:" in lines else []:
        if not line.strip():
            continue
        width = len(line) - len(line.lstrip())
        if indent is None:
            indent = width
        if width < indent:
            break
        match = re.match(r"(\*{0,2}\w+)(?: \([^)]*\))?: ?(.*)", line.strip())
        if width == indent and match:
            name = match.group(1).lstrip("*")
            entries[name] = match.group(2)
        elif name is not None:
            entries[name] += " " + line.strip()
    return entries


def documented_default(description):
    """The default an `Args:` entry states (a Python value), or `None`."""
    match = _BACKTICKED_BEFORE.search(description)
    text = match.group(1) if match else None
    if text is None:
        match = _STATED.search(description)
        if match is None:
            return None
        text = match.group(1).strip("`").rstrip(".")
    try:
        return ("value", ast.literal_eval(text))
    except (ValueError, SyntaxError):
        return ("value", text)


def _same(documented, actual):
    if isinstance(actual, bool) or isinstance(documented, bool):
        return documented is actual
    if isinstance(actual, (int, float)) and isinstance(documented,
                                                       (int, float)):
        return float(documented) == float(actual)
    return documented == actual


def mismatches(cls):
    """What `cls`'s docstring says wrongly or leaves out about defaults."""
    entries = args_section(cls.__doc__)
    problems = []
    for parameter in inspect.signature(cls).parameters.values():
        default = parameter.default
        if default is inspect.Parameter.empty or default is None or \
                parameter.name == "name":
            continue
        if not isinstance(default, (bool, int, float, str)):
            continue
        if parameter.name not in entries:
            problems.append(f"{parameter.name}: not in Args")
            continue
        found = documented_default(entries[parameter.name])
        if found is None:
            problems.append(f"{parameter.name}: no default stated "
                            f"(it is {default!r})")
        elif not _same(found[1], default):
            problems.append(f"{parameter.name}: documented {found[1]!r}, "
                            f"signature {default!r}")
    return problems


@pytest.mark.parametrize("cls", PRESETS + TERMS,
                         ids=lambda cls: cls.__name__)
def test_documented_defaults_match_the_signature(cls):
    assert not mismatches(cls), (
        f"{cls.__name__}'s docstring states defaults that differ from its "
        f"signature, or leaves them out: {mismatches(cls)}")


def test_the_check_catches_a_wrong_default():
    class Wrong:
        """A preset.

        Args:
            beta: the weight (default 0.2).
            mode: `"sum"` (default) or `"mean"`.
            steps: how many. Defaults to 3.
            flag: whether.
        """

        def __init__(self, beta=0.3, mode="mean", steps=3, flag=True):
            pass

    assert mismatches(Wrong) == [
        "beta: documented 0.2, signature 0.3",
        "mode: documented 'sum', signature 'mean'",
        "flag: no default stated (it is True)",
    ]
