"""Type checks shared by every package that validates outside input (requests, manifests, configs).

Python's bool is an int (`isinstance(True, int)` holds), so a plain isinstance check would take
`true` from a JSON file as the number 1. These helpers never do.
"""
from __future__ import annotations

import numpy as np

__all__ = ["is_int", "is_number"]


def is_int(value) -> bool:
    """An integer (Python or numpy), never a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def is_number(value) -> bool:
    """An integer or a float (Python or numpy), never a bool. NaN and infinity are numbers: range
    checks (`0 <= x <= 1` is false for NaN) or `math.isfinite` reject them where they must."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
