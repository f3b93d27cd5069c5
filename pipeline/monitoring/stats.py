"""Drift statistics between a reference sample and a current sample. Pure functions.

Observed values come from scipy's reference implementations (``ks_2samp``,
``wasserstein_distance``, ``jensenshannon``, ``chisquare``) applied to the stored
reference sample, which is the training column itself (sorted) whenever the
training set is not larger than ``monitoring.reference_sample_size``: the values are
then exact, not estimates from a sketch.

The noise floors need thousands of resampled statistics, so :func:`null_statistics`
computes the same statistics vectorised from counts over the reference's distinct
values (a resample of the reference only takes values the reference has, so the
empirical CDFs are step functions on those values and the formulas are exact);
``tests/test_drift_stats.py`` checks them against scipy.
"""

from __future__ import annotations

import numpy as np
from scipy import stats as sps
from scipy.spatial.distance import jensenshannon

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


def numeric_drift(reference_sorted: np.ndarray, current: np.ndarray, edges: np.ndarray, reference_std: float) -> dict:
    """PSI, KS (statistic and p-value), Wasserstein normalised by the reference std.

    The current column is sorted once; both empirical CDFs are then evaluated at every value of
    either sample with one binary search per value into the other (small) sample, and the two
    samples are merged by position, not sorted again; KS, Wasserstein and PSI all read these.
    scipy's ``ks_2samp`` and ``wasserstein_distance`` each sort and search both samples again.
    The formulas are scipy's, so the values equal them (tests/test_drift_stats.py)."""
    current = np.sort(current[~np.isnan(current)])
    n_ref, n_cur = len(reference_sorted), len(current)
    if n_cur == 0 or n_ref == 0:
        return {}
    # Each sample's CDF at its own values, and at the other's values (right-continuous).
    ref_below_cur = np.searchsorted(reference_sorted, current, side="right")  # the one big search
    ref_at_ref = _count_at_most_self(reference_sorted) / n_ref
    cur_at_cur = _count_at_most_self(current) / n_cur
    ref_at_cur = ref_below_cur / n_ref
    cur_at_ref = np.searchsorted(current, reference_sorted, side="right") / n_cur
    # Merge by position (a reference value goes before equal current values; ties have no width).
    merged = np.empty(n_ref + n_cur)
    gaps = np.empty(n_ref + n_cur)
    at_ref = np.arange(n_ref) + np.searchsorted(current, reference_sorted, side="left")
    at_cur = np.arange(n_cur) + ref_below_cur
    merged[at_ref], merged[at_cur] = reference_sorted, current
    gaps[at_ref], gaps[at_cur] = np.abs(ref_at_ref - cur_at_ref), np.abs(ref_at_cur - cur_at_cur)
    ks = float(min(gaps.max(), 1.0))
    if max(n_ref, n_cur) <= _KS_EXACT_MAX_N:
        ks_pvalue = float(sps.ks_2samp(reference_sorted, current).pvalue)  # exact: small samples only
    else:
        m, n = sorted([float(n_ref), float(n_cur)], reverse=True)
        ks_pvalue = float(np.clip(sps.kstwo.sf(ks, np.round(m * n / (m + n))), 0, 1))
    w = float(np.sum(np.multiply(gaps[:-1], np.diff(merged))))
    return {
        "psi": psi(sorted_bin_shares(reference_sorted, edges), sorted_bin_shares(current, edges)),
        "ks": ks,
        "ks_pvalue": ks_pvalue,
        "wasserstein": float(w / reference_std) if reference_std > 0 else w,
    }


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


def categorical_drift(reference_counts: dict[str, int], current_values) -> dict:
    """Jensen-Shannon distance (base 2) over all categories seen on either side, and the
    chi-square test of the current counts against the reference shares (over the
    reference's categories; unseen categories are a data-quality finding instead)."""
    counted = value_counts(current_values)
    if not counted or not reference_counts:
        return {}
    categories = sorted(set(reference_counts) | set(counted))
    cur = np.array([counted.get(c, 0) for c in categories], dtype="int64")
    ref = np.array([reference_counts.get(c, 0) for c in categories], dtype="float64")
    known = ref > 0
    f_obs = cur[known].astype("float64")
    out = {"jensen_shannon": float(jensenshannon(ref / ref.sum(), cur / cur.sum(), base=2))}
    if f_obs.sum() > 0 and known.sum() > 1:
        f_exp = ref[known] / ref[known].sum() * f_obs.sum()
        chi = sps.chisquare(f_obs, f_exp)
        out.update(chi_square=float(chi.statistic), chi_square_pvalue=float(chi.pvalue))
    return out


# --------------------------------------------------------------------------- noise floors


def count_statistics(
    values: np.ndarray,
    current_counts: np.ndarray,
    reference_counts: np.ndarray,
    edges: np.ndarray,
    reference_std: float,
) -> dict[str, np.ndarray]:
    """KS, Wasserstein (normalised) and PSI for rows of counts over the sorted distinct
    `values` (one row per resample): exact for samples that take only those values."""
    n_cur = current_counts.sum(axis=1, keepdims=True)
    n_ref = reference_counts.sum(axis=1, keepdims=True)
    zeros = np.zeros((len(current_counts), 1))
    cum_cur = np.concatenate([zeros, np.cumsum(current_counts, axis=1)], axis=1)
    cum_ref = np.concatenate([zeros, np.cumsum(reference_counts, axis=1)], axis=1)
    diff = cum_cur[:, 1:] / n_cur - cum_ref[:, 1:] / n_ref
    w = (np.abs(diff[:, :-1]) * np.diff(values)).sum(axis=1)
    # Bins of the distinct values, for PSI (contiguous ranges because the values are sorted).
    value_bin = np.searchsorted(edges, values, side="left")
    starts = np.searchsorted(value_bin, np.arange(len(edges) + 1), side="left")
    ends = np.searchsorted(value_bin, np.arange(len(edges) + 1), side="right")
    r = np.clip((cum_ref[:, ends] - cum_ref[:, starts]) / n_ref, PSI_EPSILON, None)
    c = np.clip((cum_cur[:, ends] - cum_cur[:, starts]) / n_cur, PSI_EPSILON, None)
    return {
        "ks": np.abs(diff).max(axis=1),
        "wasserstein": w / reference_std if reference_std > 0 else w,
        "psi": ((c - r) * np.log(c / r)).sum(axis=1),
    }


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
    out: dict[str, list] = {"psi": [], "ks": [], "wasserstein": []}
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


def category_count_statistics(current_counts: np.ndarray, reference_counts: np.ndarray) -> dict[str, np.ndarray]:
    """Jensen-Shannon distance (base 2) and the chi-square statistic for rows of counts over
    the reference's categories."""
    cur = current_counts.astype("float64")
    ref = reference_counts.astype("float64")
    pc, pr = cur / cur.sum(axis=1, keepdims=True), ref / ref.sum(axis=1, keepdims=True)
    m = (pc + pr) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_c = np.where(pc > 0, pc * np.log2(pc / m), 0.0).sum(axis=1)
        kl_r = np.where(pr > 0, pr * np.log2(pr / m), 0.0).sum(axis=1)
        expected = pr * cur.sum(axis=1, keepdims=True)
        chi = np.where(expected > 0, (cur - expected) ** 2 / expected, 0.0).sum(axis=1)
    return {"jensen_shannon": np.sqrt(np.clip((kl_c + kl_r) / 2, 0, None)), "chi_square": chi}


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
