"""Shaping: stable softplus against a float64/mpmath reference, and the empty-code rule."""

import math

import mpmath
import pytest

from codescaler import shape, softplus


def reference(x: float) -> float:
    return float(mpmath.log1p(mpmath.exp(mpmath.mpf(x))))


@pytest.mark.parametrize("x", [-1000.0, -745.0, -50.0, -1.0, -1e-9, 0.0, 1e-9, 0.5, 1.0, 30.0, 708.0,
                               709.8, 710.0, 1000.0, 1e308])
def test_softplus_matches_high_precision(x):
    assert softplus(x) == pytest.approx(reference(x), rel=1e-15, abs=1e-300)


def test_softplus_does_not_overflow_where_upstream_does():
    with pytest.raises(OverflowError):
        math.log(1 + math.exp(710.0))  # upstream's formula
    assert softplus(1000.0) == 1000.0
    assert softplus(-1000.0) == pytest.approx(math.exp(-1000.0), abs=0)


def test_shape_rules():
    assert shape(5.0, valid=False) == 0.0
    assert shape(float("nan"), valid=False) == 0.0
    xs = [-1000.0, -20.0, -3.0, 0.0, 2.0, 1000.0]
    rewards = [shape(x, True) for x in xs]
    assert all(r > 0 for r in rewards[1:])  # any valid answer above an invalid one (from -745 up)
    assert rewards == sorted(rewards)  # order preserved among valid answers


def test_shape_types():
    with pytest.raises(TypeError, match="valid must be a bool"):
        shape(1.0, 1)
    with pytest.raises(TypeError, match="raw must be a real number"):
        shape("1.0", True)
