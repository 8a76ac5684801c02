"""Argument checks shared by the optimizers and their terms."""

import math


def check_number(name, value, allow_none=False, positive=False):
    """Validates a finite hyper-parameter >= 0 (> 0 with `positive`).

    Args:
        name: the argument's name, for the error message.
        value: the value given.
        allow_none: whether `None` is accepted (and returned).
        positive: whether 0 is rejected too.

    Returns:
        The value as a float (or `None`).
    """
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"`{name}` must be a number; got {value!r}.")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(
            f"`{name}` must be a finite number {bound}; got {value}."
        )
    return value


def check_positive_int(name, value):
    """Validates an integer > 0; returns it."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(
            f"`{name}` must be a positive integer; got {value!r}."
        )
    return value
