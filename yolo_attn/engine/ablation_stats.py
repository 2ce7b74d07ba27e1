"""The statistics of an ablation: paired differences over seeds, a paired bootstrap over validation images, an
interval covering both sources, Holm's adjustment for many comparisons, and the power of the design.

- Student's t is computed exactly for integer degrees of freedom (Abramowitz & Stegun 26.7.3-4: a finite series
  in the angle atan(t / sqrt(df))); the normal distribution through ``math.erf``. No SciPy is needed.
- The bootstrap resamples validation images with replacement (Efron & Tibshirani, "An Introduction to the
  Bootstrap", 1993, ch. 6 and 13: percentile intervals); base and variant are scored on the same resample.
- Seeds and images are two independent sources of noise: the combined standard error adds their variances, with
  the Welch-Satterthwaite degrees of freedom (Satterthwaite, "An Approximate Distribution of Estimates of Variance
  Components", 1946), the image part counting as infinitely many (a bootstrap variance from 1,000 resamples is
  known far better than a variance from a few seeds). Where the image part dominates, the combined interval can be
  narrower than the seeds' own t interval, whose few degrees of freedom make it wide.
- Holm, "A Simple Sequentially Rejective Multiple Test Procedure" (1979): step-down adjusted p-values.
- Power of the paired t-test by the usual closed form n = ((t_(1-a/2) + t_(power)) sd / delta)^2 with t quantiles
  at n - 1 degrees of freedom (e.g. Julious, "Sample sizes for clinical trials with Normal data", 2004).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95
ALPHA = 1 - CONFIDENCE
POWER = 0.8
MAX_SEEDS = 1000  # seeds_needed answers "more than this" beyond


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


def central_probability(t: float, df: float) -> float:
    """P(|T| <= t) with ``df`` degrees of freedom: rounded down to an integer (the conservative choice for a
    Satterthwaite df), the normal distribution when ``df`` is infinite or above 10,000."""
    if math.isinf(df) or df > 10_000:
        return math.erf(abs(t) / math.sqrt(2))
    return t_central_probability(t, max(1, math.floor(df)))


def t_quantile(confidence: float, df: float) -> float:
    """The t with P(|T| <= t) = ``confidence`` (the two-sided critical value), by bisection."""
    low, high = 0.0, 1.0
    while central_probability(high, df) < confidence:
        low, high = high, high * 2
    for _ in range(100):
        middle = (low + high) / 2
        low, high = (middle, high) if central_probability(middle, df) < confidence else (low, middle)
    return (low + high) / 2


def two_sided_p(statistic: float, df: float) -> float:
    return 1 - central_probability(statistic, df)


def format_p(p: float) -> str:
    """A p-value for a table: two significant digits, and "< 0.0001" below that."""
    return "< 0.0001" if p < 1e-4 else f"{p:.2g}"


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
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


def paired_delta(values: Sequence[float], base: Sequence[float]) -> PairedDelta | None:
    """Paired comparison of ``values`` with ``base`` (same seeds, same order); ``None`` below two pairs.
    Identical differences (zero spread) give a zero-width interval and p = 1 when they are 0, else 0."""
    differences = [v - b for v, b in zip(values, base, strict=True)]
    if len(differences) < 2:
        return None
    mean, std = mean_std(differences)
    assert std is not None  # two or more differences
    n = len(differences)
    if not std:  # no spread (std is None only for one value, excluded above)
        return PairedDelta(n, mean, mean, mean, 1.0 if mean == 0 else 0.0)
    error = std / math.sqrt(n)
    half = t_quantile(CONFIDENCE, n - 1) * error
    return PairedDelta(n, mean, mean - half, mean + half, two_sided_p(mean / error, n - 1))


# -- the bootstrap over validation images -----------------------------------------------------------------------

def resample_counts(n_images: int, resamples: int, seed: int) -> np.ndarray:
    """``(resamples, n_images)``: how often each image is drawn in each resample of ``n_images`` images drawn with
    replacement (a seeded multinomial, so every comparison of an ablation sees the same resamples)."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_images, np.full(n_images, 1 / n_images), size=resamples)


def percentile_interval(samples: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The bootstrap percentile interval: the (1 - c)/2 and (1 + c)/2 quantiles of ``samples``."""
    low, high = np.quantile(samples, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(low), float(high)


@dataclass(frozen=True)
class Estimate:
    """A mean difference with the interval and p of one source of noise, or of both.

    ``seeds``: the t interval over seeds (training noise, ``None`` below two seeds); ``images``: the bootstrap
    percentile interval over validation images (the validation set as a sample); ``low``/``high``/``p_value``:
    the interval and test covering both, from the combined standard error ``error`` with ``df`` degrees of freedom
    (infinite: the normal distribution)."""

    n: int
    mean: float
    seeds: PairedDelta | None
    images: tuple[float, float]
    error: float
    df: float
    low: float
    high: float
    p_value: float

    def interval(self, confidence: float) -> tuple[float, float]:
        """The combined interval at another confidence (a multiplicity-adjusted one)."""
        half = t_quantile(confidence, self.df) * self.error if self.error > 0 else 0.0
        return self.mean - half, self.mean + half


def combine(seed_differences: Sequence[float], image_differences: np.ndarray) -> Estimate:
    """The estimate of a paired difference measured on ``n`` seeds (``seed_differences``: variant - reference per
    seed on the whole validation set) and on bootstrap resamples of the images (``image_differences``: the
    seed-mean difference on each resample).

    Variance of the mean = seed variance / n + bootstrap variance; df by Welch-Satterthwaite (infinite for one
    seed or no seed spread). Zero spread in both gives a zero-width interval and p = 1 for a zero mean (else 0)."""
    n = len(seed_differences)
    mean = float(np.mean(seed_differences))
    seed_var = float(np.var(seed_differences, ddof=1)) / n if n > 1 else 0.0
    image_var = float(np.var(image_differences, ddof=1)) if len(image_differences) > 1 else 0.0
    error = math.sqrt(seed_var + image_var)
    df = math.inf if seed_var == 0 else (seed_var + image_var) ** 2 / (seed_var ** 2 / (n - 1))
    seeds = paired_delta(list(seed_differences), [0.0] * n)
    images = percentile_interval(image_differences)
    if error == 0:
        return Estimate(n, mean, seeds, images, 0.0, df, mean, mean, 1.0 if mean == 0 else 0.0)
    half = t_quantile(CONFIDENCE, df) * error
    return Estimate(n, mean, seeds, images, error, df, mean - half, mean + half, two_sided_p(mean / error, df))


# -- many comparisons ---------------------------------------------------------------------------------------------

def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given: the k-th smallest p times (m - k + 1), made
    non-decreasing along that order and capped at 1. Reject where the adjusted p < alpha."""
    m = len(p_values)
    adjusted = [0.0] * m
    running = 0.0
    for rank, index in enumerate(sorted(range(m), key=lambda i: p_values[i])):
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


# -- power ---------------------------------------------------------------------------------------------------------

def one_sided_quantile(probability: float, df: float) -> float:
    """The t with P(T <= t) = ``probability`` (>= 0.5)."""
    return t_quantile(2 * probability - 1, df)


def minimum_detectable_effect(sd: float, n: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """The smallest mean paired difference a two-sided paired t-test on ``n`` seeds with per-seed spread ``sd``
    detects with probability ``power`` at level ``alpha``: (t_(1-alpha/2) + t_(power)) sd / sqrt(n), df n - 1."""
    quantiles = one_sided_quantile(1 - alpha / 2, n - 1) + one_sided_quantile(power, n - 1)
    return quantiles * sd / math.sqrt(n)


def seeds_needed(delta: float, sd: float, alpha: float = ALPHA, power: float = POWER) -> int | None:
    """The fewest seeds whose minimum detectable effect is at most ``|delta|``; ``None`` beyond :data:`MAX_SEEDS`
    (or for a zero ``delta`` with nonzero spread). Zero spread: 2 (the fewest that give an interval)."""
    if sd == 0:
        return 2
    if delta == 0:
        return None
    estimate = ((one_sided_quantile(1 - alpha / 2, math.inf) + one_sided_quantile(power, math.inf)) * sd / delta) ** 2
    n = max(2, math.floor(estimate))  # the normal-quantile answer is a lower bound for the t answer
    while n <= MAX_SEEDS:
        if minimum_detectable_effect(sd, n, alpha, power) <= abs(delta):
            return n
        n += 1
    return None
