"""Reward shaping of the published recipe: 0 for empty code, softplus of the raw score otherwise."""

import math
import numbers


def softplus(x: float) -> float:
    """log(1 + e^x) without overflow: exact to double precision for every finite x."""
    if x != x:  # NaN passes through rather than becoming a plausible reward
        return x
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def shape(raw: float, valid: bool) -> float:
    """The CodeScaler reward: 0.0 when no valid code was extracted, else softplus(raw) > 0."""
    if not isinstance(valid, bool):
        raise TypeError(f"shape(): valid must be a bool, got {type(valid).__name__}")
    if not valid:
        return 0.0
    if not isinstance(raw, numbers.Real):
        raise TypeError(f"shape(): raw must be a real number, got {type(raw).__name__}")
    return softplus(float(raw))
