"""Confidence intervals for accuracies over test tasks."""

from __future__ import annotations

import math

import numpy as np

# two-sided 95% quantile of the normal distribution; with the 600 test tasks of the protocol the
# t quantile (1.9640) differs in the fourth digit
_Z95 = 1.959963984540054


def mean_confidence_interval(values, confidence: float = 0.95) -> tuple[float, float]:
    """Mean and half-width of the normal-approximation confidence interval of the mean.

    Args:
        values: 1-D sequence or array of floats (e.g. per-task accuracies), at least 2 of them.
        confidence: only 0.95 is supported (the papers' protocol).

    Returns:
        ``(mean, half_width)`` as floats: ``half_width = 1.96 * std(ddof=1) / sqrt(n)``.

    Example:
        >>> mean, half = mean_confidence_interval([0.9, 1.0, 0.8, 1.0])
        >>> round(mean, 3), round(half, 3)
        (0.925, 0.094)
    """
    if confidence != 0.95:
        raise ValueError(f"confidence={confidence!r} is not supported; only 0.95 is")
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"values must be a 1-D sequence of numbers: {error}") from None
    if array.ndim != 1 or array.size < 2:
        raise ValueError(f"values must be a 1-D sequence of at least 2 numbers, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError("values holds NaN or infinity")
    return float(array.mean()), float(_Z95 * array.std(ddof=1) / math.sqrt(array.size))
