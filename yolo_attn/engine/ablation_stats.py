"""The few statistics an ablation table needs: mean ± std over seeds and a paired t-test of variant - base.

The Student t distribution is computed exactly for the integer degrees of freedom a seed count gives
(Abramowitz & Stegun 26.7.3-4: a finite series in the angle atan(t / sqrt(df))), so no SciPy is needed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

CONFIDENCE = 0.95


def t_central_probability(t: float, df: int) -> float:
    """P(|T| <= t) for Student's t with ``df`` (a positive integer) degrees of freedom."""
    theta = math.atan(abs(t) / math.sqrt(df))
    cos2 = math.cos(theta) ** 2
    if df % 2:  # (2/pi) (theta + sin(theta) (cos + 2/3 cos^3 + 2*4/(3*5) cos^5 + ...)), (df - 1) / 2 terms
        term, series = math.cos(theta), 0.0
        for k in range(1, (df + 1) // 2):
            series += term
            term *= 2 * k / (2 * k + 1) * cos2
        return 2 / math.pi * (theta + math.sin(theta) * series)
    term, series = 1.0, 0.0  # sin(theta) (1 + 1/2 cos^2 + 1*3/(2*4) cos^4 + ...), df / 2 terms
    for k in range(df // 2):
        series += term
        term *= (2 * k + 1) / (2 * k + 2) * cos2
    return math.sin(theta) * series


def t_quantile(confidence: float, df: int) -> float:
    """The t with P(|T| <= t) = ``confidence`` (the two-sided critical value), by bisection."""
    low, high = 0.0, 1.0
    while t_central_probability(high, df) < confidence:
        low, high = high, high * 2
    for _ in range(100):
        middle = (low + high) / 2
        low, high = (middle, high) if t_central_probability(middle, df) < confidence else (low, middle)
    return (low + high) / 2


def mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (``None`` for a single value)."""
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


@dataclass(frozen=True)
class PairedDelta:
    """Mean of the per-seed differences with its 95 % t interval and the two-sided paired t-test's p."""

    n: int
    mean: float
    low: float
    high: float
    p_value: float

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


def paired_delta(values: list[float], base: list[float]) -> PairedDelta | None:
    """Paired comparison of ``values`` with ``base`` (same seeds, same order); ``None`` below two pairs.
    Identical differences (zero spread) give a zero-width interval and p = 1 when they are 0, else 0."""
    differences = [v - b for v, b in zip(values, base, strict=True)]
    if len(differences) < 2:
        return None
    mean, std = mean_std(differences)
    assert std is not None  # two or more differences
    n = len(differences)
    if std == 0:
        return PairedDelta(n, mean, mean, mean, 1.0 if mean == 0 else 0.0)
    error = std / math.sqrt(n)
    half = t_quantile(CONFIDENCE, n - 1) * error
    return PairedDelta(n, mean, mean - half, mean + half, 1 - t_central_probability(mean / error, n - 1))
