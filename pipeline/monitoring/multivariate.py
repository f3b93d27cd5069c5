"""Multivariate drift: PCA reconstruction error (NannyML's method).

Per-column statistics cannot see a change in how features move together: six correlated columns
that each shift a little, or columns whose joint structure breaks while every marginal stays the
same. A PCA fitted on the standardised training features (enough components to explain
``monitoring.multivariate.variance`` of the variance) compresses and reconstructs each row; rows
from the training distribution reconstruct well, rows whose correlations changed do not. The
statistic is the window's mean reconstruction error (Euclidean, in standard deviations) against
the holdout's (rows the PCA did not see), with a bootstrap noise floor at the window's size; a
flag needs a calibrated p below ``monitoring.fdr`` and an increase of at least ``min_increase``.
The features that drive it are those whose squared residual grew most.

Numeric features only (categorical ones have no scale to standardise); missing values take the
reference mean, so they add no error (the quality checks watch missing shares).
Pure functions: arrays and the stored model in, JSON-able results out.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.core.settings import MonitoringConfig
from pipeline.monitoring.stats import calibrated_pvalue

ERROR_COLUMN = "__reconstruction__"  # the holdout's per-row errors in the reference sample
MAX_DRAWS = 20_000_000  # bootstrap draws held at once; above it the floor is the mean's normal law


def fit(train: np.ndarray, holdout: np.ndarray, columns: list[str], variance: float) -> tuple[dict, np.ndarray]:
    """The PCA model (JSON-able) from the training rows, and the holdout's per-row errors."""
    mean = np.nanmean(train, axis=0)
    scale = np.nanstd(train, axis=0)
    scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
    mean = np.where(np.isfinite(mean), mean, 0.0)
    z = _standardised(train, mean, scale)
    eigenvalues, vectors = np.linalg.eigh(np.cov(z, rowvar=False))
    order = np.argsort(eigenvalues)[::-1]
    explained = np.cumsum(eigenvalues[order]) / max(eigenvalues.sum(), 1e-12)
    k = int(np.searchsorted(explained, variance) + 1)
    model = {
        "method": "pca_reconstruction",
        "columns": list(columns),
        "mean": mean.tolist(),
        "scale": scale.tolist(),
        "components": vectors[:, order[:k]].T.tolist(),
        "explained_variance": float(explained[k - 1]),
    }
    squared = squared_residuals(model, holdout)
    model["reference_error"] = float(np.sqrt(squared.sum(axis=1)).mean())
    model["reference_residuals"] = squared.mean(axis=0).tolist()
    model["reference_rows"] = int(len(holdout))
    return model, np.sort(np.sqrt(squared.sum(axis=1)))


def _standardised(values: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    z = (np.asarray(values, dtype="float64") - mean) / scale
    return np.where(np.isfinite(z), z, 0.0)  # missing values take the mean


def squared_residuals(model: dict, values: np.ndarray) -> np.ndarray:
    """Per row and feature: the squared difference between a row and its reconstruction."""
    z = _standardised(values, np.asarray(model["mean"]), np.asarray(model["scale"]))
    components = np.asarray(model["components"])
    return (z - (z @ components.T) @ components) ** 2


def null_means(errors: np.ndarray, n: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted bootstrap means of `n` reference errors: the statistic's noise floor at this size."""
    if n * resamples > MAX_DRAWS:  # the mean of thousands of draws is normal to far below 1%
        return np.sort(rng.normal(errors.mean(), errors.std() / np.sqrt(n), resamples))
    per_chunk = max(1, MAX_DRAWS // (10 * n))
    means = [
        rng.choice(errors, size=(min(per_chunk, resamples - i), n)).mean(axis=1) for i in range(0, resamples, per_chunk)
    ]
    return np.sort(np.concatenate(means))


def assess(
    model: dict, errors: np.ndarray, current: np.ndarray, resamples: int, fdr: float, min_increase: float, seed: int
) -> dict:
    """The window's statistic against its noise floor, and the features that drive it."""
    squared = squared_residuals(model, current)
    value = float(np.sqrt(squared.sum(axis=1)).mean())
    reference = model["reference_error"]
    floor = null_means(errors, len(current), resamples, np.random.default_rng([seed, len(current)]))
    pvalue = calibrated_pvalue(floor, value)
    increase = value / reference - 1 if reference > 0 else 0.0
    growth = squared.mean(axis=0) - np.asarray(model["reference_residuals"])
    total = growth[growth > 0].sum()
    drivers = [
        {"feature": model["columns"][i], "residual_increase": float(growth[i]), "share": float(growth[i] / total)}
        for i in np.argsort(growth)[::-1][:5]
        if growth[i] > 0 and total > 0
    ]
    return {
        "statistic": "reconstruction_error",
        "value": value,
        "reference": reference,
        "increase": float(increase),
        "noise_p95": float(np.quantile(floor, 0.95)),
        "calibrated_pvalue": pvalue,
        "flagged": bool(pvalue < fdr and increase >= min_increase),
        "min_increase": min_increase,
        "drivers": drivers,
        "columns": len(model["columns"]),
        "components": len(model["components"]),
        "rows": int(len(current)),
    }


def for_window(profile: dict, sample: dict, current: pd.DataFrame, config: MonitoringConfig) -> dict | None:
    """The window's result; None when the reference has no PCA model (trained before it existed,
    or fewer than two numeric features), it is switched off, or the window is empty."""
    model = profile.get("multivariate")
    if not model or not config.multivariate.enabled or not len(current) or ERROR_COLUMN not in sample:
        return None
    values = np.column_stack(
        [pd.to_numeric(current[c], errors="coerce").to_numpy("float64", na_value=np.nan) for c in model["columns"]]
    )
    return assess(
        model,
        sample[ERROR_COLUMN],
        values,
        config.bootstrap_resamples,
        config.fdr,
        config.multivariate.min_increase,
        config.random_state,
    )


def statistics_row(result: dict) -> dict:
    """Its row of the run's statistics table."""
    return {
        "category": "multivariate_drift",
        "feature": f"{result['columns']} numeric features (PCA, {result['components']} components)",
        "statistic": result["statistic"],
        "value": result["value"],
        "reference_value": result["reference"],
        "noise_p95": result["noise_p95"],
        "calibrated_pvalue": result["calibrated_pvalue"],
        "fixed_threshold": f"+{result['min_increase']:.0%} and p < fdr",
        "is_primary": True,
        "calibrated_flag": result["flagged"],
    }


def describe(result: dict | None) -> str:
    """One sentence for reasons, alerts and the report."""
    if not result:
        return "multivariate drift: not computed (fewer than two numeric features, or no scored rows)"
    drivers = ", ".join(d["feature"] for d in result["drivers"][:3]) or "no single feature"
    return (
        f"multivariate drift{' ' if result['flagged'] else ' not flagged '}(PCA reconstruction error "
        f"{result['value']:.3f} vs {result['reference']:.3f}, {result['increase']:+.0%}, calibrated p "
        f"{result['calibrated_pvalue']:.3g}; driven by {drivers})"
    )
