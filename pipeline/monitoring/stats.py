"""Drift statistics between a reference sample and a current sample: a registry, one function and
one registration per statistic. Pure functions.

Each statistic is registered with :func:`statistic`: its kind (numeric or categorical), the observed
value (from the pieces both samples share, computed once), optionally a p-value, the vectorised
form its noise floor needs (rows of resampled counts), and its fixed threshold. The monitor, the
report, the params check and the noise floors all read :data:`STATISTICS`.

Observed values equal scipy's reference implementations (``ks_2samp``, ``wasserstein_distance``,
``jensenshannon``, ``chisquare``) on the stored reference sample, which is the training column itself
(sorted) whenever the training set is not larger than ``monitoring.reference_sample_size``.

The noise floors need thousands of resampled statistics, so :func:`null_numeric` computes them
vectorised from counts over the reference's distinct values (a resample of the reference only takes
values the reference has, so the empirical CDFs are step functions on those values and the formulas
are exact); ``tests/test_drift_stats.py`` checks them against scipy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

# Keeps PSI finite when a bin is empty on one side (the usual convention).
PSI_EPSILON = 1e-4
# Bounds the memory of one chunk of bootstrap resamples (indices drawn at once).
MAX_DRAWS_PER_CHUNK = 20_000_000


def psi_edges(reference_sorted: np.ndarray, bins: int) -> np.ndarray:
    """Inner bin edges at the reference's quantiles (duplicates merged for discrete columns)."""
    if len(reference_sorted) == 0:
        return np.array([])
    qs = np.quantile(reference_sorted, np.linspace(0, 1, bins + 1)[1:-1])
    return np.unique(qs)


def bin_shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Shares of values per bin; bin i holds edges[i-1] < x <= edges[i] (open ends)."""
    counts = np.bincount(np.searchsorted(edges, values, side="left"), minlength=len(edges) + 1)
    return counts / max(len(values), 1)


def sorted_bin_shares(values_sorted: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """:func:`bin_shares` of an already sorted array: one binary search per edge, not per value."""
    below = np.searchsorted(values_sorted, edges, side="right")
    counts = np.diff(np.concatenate([[0], below, [len(values_sorted)]]))
    return counts / max(len(values_sorted), 1)


def psi(reference_shares: np.ndarray, current_shares: np.ndarray) -> float:
    r = np.clip(reference_shares, PSI_EPSILON, None)
    c = np.clip(current_shares, PSI_EPSILON, None)
    return float(np.sum((c - r) * np.log(c / r)))


# scipy's ks_2samp is exact up to this sample size and asymptotic above it.
_KS_EXACT_MAX_N = 10_000


def _count_at_most_self(values_sorted: np.ndarray) -> np.ndarray:
    """For each element of a sorted array, how many elements are <= it (ties counted whole): the
    empirical CDF at its own values, in O(n) instead of a binary search per element."""
    n = len(values_sorted)
    last_of_run = np.flatnonzero(np.r_[values_sorted[1:] != values_sorted[:-1], True])
    return np.repeat(last_of_run + 1, np.diff(np.r_[-1, last_of_run]))[:n]


def category_counts(values, categories: list[str]) -> np.ndarray:
    """Counts of `values` (missing ones left out) over `categories`, counted by pandas (hashing in
    C, or the codes of a categorical column), not one Python step per row."""
    counted = value_counts(values)
    return np.array([counted.get(c, 0) for c in categories], dtype="int64")


def value_counts(values) -> dict[str, int]:
    """Non-missing values counted by their text form (categories are canonical text)."""
    import pandas as pd

    series = values if isinstance(values, pd.Series) else pd.Series(list(values), dtype=object)
    counted = series.value_counts(dropna=True)
    out: dict[str, int] = {}
    for key, count in counted.items():
        if count:
            out[str(key)] = out.get(str(key), 0) + int(count)
    return out


# --------------------------------------------------------------------------- noise floors


def null_numeric(
    reference_sorted: np.ndarray,
    n_current: int,
    edges: np.ndarray,
    reference_std: float,
    resamples: int,
    rng: np.random.Generator,
    chunk: int = 200,
) -> dict[str, np.ndarray]:
    """Statistics between two independent resamples of the reference, of the current and the
    reference sizes: what sampling alone produces when nothing drifted (two-sample bootstrap)."""
    values, ids = np.unique(reference_sorted, return_inverse=True)
    k, n_ref = len(values), len(reference_sorted)
    # At most ~20M drawn indices per chunk (160 MB): a 1M-row week must not draw 200M at once.
    chunk = max(1, min(chunk, MAX_DRAWS_PER_CHUNK // max(n_current + n_ref, 1)))
    out: dict[str, list] = {name: [] for name, s in STATISTICS.items() if s.kind == "numeric" and s.null}
    for start in range(0, resamples, chunk):
        b = min(chunk, resamples - start)
        offsets = (np.arange(b) * k)[:, None]
        cur = np.bincount(
            (ids[rng.integers(0, n_ref, size=(b, n_current))] + offsets).ravel(), minlength=b * k
        ).reshape(b, k)
        ref = np.bincount((ids[rng.integers(0, n_ref, size=(b, n_ref))] + offsets).ravel(), minlength=b * k).reshape(
            b, k
        )
        for name, vals in count_statistics(values, cur, ref, edges, reference_std).items():
            out[name].append(vals)
    return {name: np.sort(np.concatenate(parts)) for name, parts in out.items()}


def null_categorical(
    reference_counts: dict[str, int], n_current: int, resamples: int, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    counts = np.array([reference_counts[c] for c in sorted(reference_counts)], dtype="float64")
    p = counts / counts.sum()
    cur = rng.multinomial(n_current, p, size=resamples)
    ref = rng.multinomial(int(counts.sum()), p, size=resamples)
    return {name: np.sort(v) for name, v in category_count_statistics(cur, ref).items()}


def calibrated_pvalue(null_sorted: np.ndarray, observed: float) -> float:
    """Share of resampled statistics at least as large as the observed one (add-one rule,
    so a p-value is never 0)."""
    exceed = len(null_sorted) - np.searchsorted(null_sorted, observed, side="left")
    return float((1 + exceed) / (1 + len(null_sorted)))


def benjamini_hochberg(pvalues: list[float], fdr: float) -> list[bool]:
    """Which hypotheses are rejected at false-discovery rate `fdr` (step-up procedure)."""
    m = len(pvalues)
    if m == 0:
        return []
    order = np.argsort(pvalues)
    ranked = np.asarray(pvalues)[order]
    below = np.nonzero(ranked <= fdr * np.arange(1, m + 1) / m)[0]
    rejected = np.zeros(m, dtype=bool)
    if len(below):
        rejected[order[: below[-1] + 1]] = True
    return rejected.tolist()


# --------------------------------------------------------------------------- the registry


@dataclass(frozen=True)
class Statistic:
    name: str
    kind: str  # "numeric" | "categorical"
    observed: Callable[[Any], float | None]  # NumericPair | CategoricalPair -> value (None: undefined)
    pvalue: Callable[[Any], float] | None  # the same -> p-value, reported as <name>_pvalue
    null: Callable[[Any], np.ndarray] | None  # NumericCounts | CategoryCounts -> one value per resample
    fixed: float  # the fixed view's default threshold (monitoring.fixed_thresholds overrides it) ...
    fixed_on_pvalue: bool  # ... on the p-value (flagged below it) or on the value (flagged above)

    @property
    def fixed_key(self) -> str:
        return f"{self.name}_pvalue" if self.fixed_on_pvalue else self.name


STATISTICS: dict[str, Statistic] = {}


def statistic(name: str, kind: str, *, fixed: float, fixed_on_pvalue: bool = False, null=None, pvalue=None):
    """Register the decorated function as the observed value of statistic `name`."""

    def register(observed):
        STATISTICS[name] = Statistic(name, kind, observed, pvalue, null, fixed, fixed_on_pvalue)
        return observed

    return register


def names(kind: str) -> tuple[str, ...]:
    return tuple(n for n, s in STATISTICS.items() if s.kind == kind)


def check_settings(m) -> list[str]:
    """The statistic names monitoring settings use must be registered ones."""
    problems = []
    for kind in ("numeric", "categorical"):
        stat = m.primary_statistic.get(kind)
        if stat not in names(kind) or STATISTICS[stat].null is None:
            allowed = [n for n in names(kind) if STATISTICS[n].null]
            problems.append(f"monitoring.primary_statistic.{kind} must be one of {allowed}, got {stat!r}")
    problems += [f"monitoring.min_effect: unknown statistic {s!r}" for s in m.min_effect if s not in STATISTICS]
    keys = {s.fixed_key for s in STATISTICS.values()}
    problems += [
        f"monitoring.fixed_thresholds: unknown key {k!r}; known: {sorted(keys)}"
        for k in m.fixed_thresholds
        if k not in keys
    ]
    return problems


@dataclass
class NumericPair:
    """Both samples sorted, their empirical CDFs at every value of either, merged by position."""

    reference: np.ndarray
    current: np.ndarray
    edges: np.ndarray
    reference_std: float
    merged: np.ndarray  # every value of both samples, in order
    gaps: np.ndarray  # |F_ref - F_cur| right after each merged value


def numeric_pair(
    reference_sorted: np.ndarray, current: np.ndarray, edges: np.ndarray, std: float
) -> NumericPair | None:
    """The current column is sorted once; both empirical CDFs are evaluated at every value of either
    sample with one binary search per value into the other sample, and the samples are merged by
    position, not sorted again (scipy's ks_2samp and wasserstein_distance each sort and search both)."""
    current = np.sort(current[~np.isnan(current)])
    n_ref, n_cur = len(reference_sorted), len(current)
    if n_cur == 0 or n_ref == 0:
        return None
    ref_below_cur = np.searchsorted(reference_sorted, current, side="right")  # the one big search
    ref_at_ref = _count_at_most_self(reference_sorted) / n_ref
    cur_at_cur = _count_at_most_self(current) / n_cur
    cur_at_ref = np.searchsorted(current, reference_sorted, side="right") / n_cur
    # A reference value goes before equal current values; ties have no width.
    merged, gaps = np.empty(n_ref + n_cur), np.empty(n_ref + n_cur)
    at_ref = np.arange(n_ref) + np.searchsorted(current, reference_sorted, side="left")
    at_cur = np.arange(n_cur) + ref_below_cur
    merged[at_ref], merged[at_cur] = reference_sorted, current
    gaps[at_ref], gaps[at_cur] = np.abs(ref_at_ref - cur_at_ref), np.abs(ref_below_cur / n_ref - cur_at_cur)
    return NumericPair(reference_sorted, current, edges, std, merged, gaps)


@dataclass
class NumericCounts:
    """Rows of resampled counts over the reference's sorted distinct `values` (one row per resample)."""

    values: np.ndarray
    current: np.ndarray
    reference: np.ndarray
    edges: np.ndarray
    reference_std: float

    @cached_property
    def cumulative(self) -> tuple[np.ndarray, np.ndarray]:
        zeros = np.zeros((len(self.current), 1))
        return (
            np.concatenate([zeros, np.cumsum(self.current, axis=1)], axis=1) / self.current.sum(axis=1, keepdims=True),
            np.concatenate([zeros, np.cumsum(self.reference, axis=1)], axis=1)
            / self.reference.sum(axis=1, keepdims=True),
        )

    @cached_property
    def cdf_difference(self) -> np.ndarray:
        cur, ref = self.cumulative
        return cur[:, 1:] - ref[:, 1:]


@dataclass
class CategoricalPair:
    """Counts of both samples over every category seen on either side."""

    categories: list[str]
    current: np.ndarray
    reference: np.ndarray


@dataclass
class CategoryCounts:
    """Rows of resampled counts over the reference's categories."""

    current: np.ndarray
    reference: np.ndarray


def _ks_pvalue(p: NumericPair) -> float:
    from scipy import stats as sps  # imported when used: checking settings must stay cheap

    n_ref, n_cur = len(p.reference), len(p.current)
    if max(n_ref, n_cur) <= _KS_EXACT_MAX_N:
        return float(sps.ks_2samp(p.reference, p.current).pvalue)  # exact: small samples only
    m, n = sorted([float(n_ref), float(n_cur)], reverse=True)
    return float(np.clip(sps.kstwo.sf(ks(p), np.round(m * n / (m + n))), 0, 1))


def _psi_null(c: NumericCounts) -> np.ndarray:
    # Bins of the distinct values (contiguous ranges because the values are sorted).
    value_bin = np.searchsorted(c.edges, c.values, side="left")
    starts = np.searchsorted(value_bin, np.arange(len(c.edges) + 1), side="left")
    ends = np.searchsorted(value_bin, np.arange(len(c.edges) + 1), side="right")
    cum_cur, cum_ref = c.cumulative
    r = np.clip(cum_ref[:, ends] - cum_ref[:, starts], PSI_EPSILON, None)
    cur = np.clip(cum_cur[:, ends] - cum_cur[:, starts], PSI_EPSILON, None)
    return ((cur - r) * np.log(cur / r)).sum(axis=1)


def _normalised(value, std: float):
    return value / std if std > 0 else value


@statistic("psi", "numeric", fixed=0.1, null=_psi_null)
def population_stability(p: NumericPair) -> float:
    return psi(sorted_bin_shares(p.reference, p.edges), sorted_bin_shares(p.current, p.edges))


@statistic(
    "ks",
    "numeric",
    fixed=0.05,
    fixed_on_pvalue=True,
    pvalue=_ks_pvalue,
    null=lambda c: np.abs(c.cdf_difference).max(axis=1),
)
def ks(p: NumericPair) -> float:
    return float(min(p.gaps.max(), 1.0))


@statistic(
    "wasserstein",
    "numeric",
    fixed=0.1,
    null=lambda c: _normalised((np.abs(c.cdf_difference[:, :-1]) * np.diff(c.values)).sum(axis=1), c.reference_std),
)
def wasserstein(p: NumericPair) -> float:
    """Normalised by the reference's standard deviation."""
    return float(_normalised(float(np.sum(np.multiply(p.gaps[:-1], np.diff(p.merged)))), p.reference_std))


def _js_null(c: CategoryCounts) -> np.ndarray:
    cur, ref = c.current.astype("float64"), c.reference.astype("float64")
    pc, pr = cur / cur.sum(axis=1, keepdims=True), ref / ref.sum(axis=1, keepdims=True)
    m = (pc + pr) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_c = np.where(pc > 0, pc * np.log2(pc / m), 0.0).sum(axis=1)
        kl_r = np.where(pr > 0, pr * np.log2(pr / m), 0.0).sum(axis=1)
    return np.sqrt(np.clip((kl_c + kl_r) / 2, 0, None))


def _chi_square_null(c: CategoryCounts) -> np.ndarray:
    cur, ref = c.current.astype("float64"), c.reference.astype("float64")
    expected = ref / ref.sum(axis=1, keepdims=True) * cur.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(expected > 0, (cur - expected) ** 2 / expected, 0.0).sum(axis=1)


@statistic("jensen_shannon", "categorical", fixed=0.1, null=_js_null)
def jensen_shannon(p: CategoricalPair) -> float:
    """Base 2, over every category seen on either side."""
    from scipy.spatial.distance import jensenshannon

    return float(jensenshannon(p.reference / p.reference.sum(), p.current / p.current.sum(), base=2))


def _chi_square(p: CategoricalPair):
    """Current counts against the reference shares, over the reference's categories (unseen ones are
    a data-quality finding instead); None when it is undefined."""
    from scipy import stats as sps

    known = p.reference > 0
    f_obs = p.current[known].astype("float64")
    if f_obs.sum() <= 0 or known.sum() <= 1:
        return None
    return sps.chisquare(f_obs, p.reference[known] / p.reference[known].sum() * f_obs.sum())


@statistic(
    "chi_square",
    "categorical",
    fixed=0.05,
    fixed_on_pvalue=True,
    pvalue=lambda p: float(_chi_square(p).pvalue),
    null=_chi_square_null,
)
def chi_square(p: CategoricalPair) -> float | None:
    result = _chi_square(p)
    return None if result is None else float(result.statistic)


# --------------------------------------------------------------------------- all statistics at once


def _observe(pair, kind: str) -> dict:
    out: dict = {}
    for name, s in STATISTICS.items():
        if s.kind != kind or (value := s.observed(pair)) is None:
            continue
        out[name] = value
        if s.pvalue is not None:
            out[f"{name}_pvalue"] = s.pvalue(pair)
    return out


def numeric_drift(reference_sorted: np.ndarray, current: np.ndarray, edges: np.ndarray, reference_std: float) -> dict:
    """Every numeric statistic (and p-value) of the current column against the sorted reference."""
    pair = numeric_pair(reference_sorted, current, edges, reference_std)
    return _observe(pair, "numeric") if pair is not None else {}


def categorical_drift(reference_counts: dict[str, int], current_values) -> dict:
    """Every categorical statistic (and p-value) of the current values against the reference counts."""
    counted = value_counts(current_values)
    if not counted or not reference_counts:
        return {}
    categories = sorted(set(reference_counts) | set(counted))
    pair = CategoricalPair(
        categories,
        np.array([counted.get(c, 0) for c in categories], dtype="int64"),
        np.array([reference_counts.get(c, 0) for c in categories], dtype="float64"),
    )
    return _observe(pair, "categorical")


def count_statistics(
    values: np.ndarray,
    current_counts: np.ndarray,
    reference_counts: np.ndarray,
    edges: np.ndarray,
    reference_std: float,
) -> dict[str, np.ndarray]:
    """Every numeric statistic with a noise floor, for rows of counts over the sorted distinct `values`."""
    counts = NumericCounts(values, current_counts, reference_counts, edges, reference_std)
    return {n: s.null(counts) for n, s in STATISTICS.items() if s.kind == "numeric" and s.null}


def category_count_statistics(current_counts: np.ndarray, reference_counts: np.ndarray) -> dict[str, np.ndarray]:
    """Every categorical statistic with a noise floor, for rows of counts over the reference's categories."""
    counts = CategoryCounts(current_counts, reference_counts)
    return {n: s.null(counts) for n, s in STATISTICS.items() if s.kind == "categorical" and s.null}
