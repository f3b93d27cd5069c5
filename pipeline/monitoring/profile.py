"""The reference profile stored with each model version, so the weekly monitor never
reloads the training set.

    models/<model>/versions/<version>/reference_profile.json   per column: kind, counts,
        missing share, mean/std/min/max, PSI bin edges; category counts; score summary;
        calibration curve (isotonic, fitted on the holdout); permutation importance
    models/<model>/versions/<version>/reference_sample.parquet  per numeric column the
        sorted non-missing training values (column, value), plus ``__score__``: the
        model's scores on the holdout

The sample is the whole column when the training set has at most
``monitoring.reference_sample_size`` rows (``exact: true``: drift statistics are then
exactly scipy's on the training data); otherwise a seeded uniform sample of that size.
"""

from __future__ import annotations

import io
import json
import logging

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.core.settings import PipelineConfig
from pipeline.monitoring import attribution, multivariate
from pipeline.monitoring.stats import psi_edges, value_counts

log = logging.getLogger(__name__)

PROFILE = "reference_profile.json"
SAMPLE = "reference_sample.parquet"
SCORE_COLUMN = "__score__"


def numeric_values(series: pd.Series) -> np.ndarray:
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)


def category_values(series: pd.Series) -> list:
    return [None if (v is None or v != v) else str(v) for v in series.astype(object).tolist()]


def _numeric_summary(values: np.ndarray, rows: int, cap: int, bins: int, rng) -> tuple[dict, np.ndarray]:
    present = np.sort(values[~np.isnan(values)])
    sampled = len(present) > cap
    if sampled:
        present = np.sort(rng.choice(present, size=cap, replace=False))
    summary = {
        "kind": "numeric",
        "n": int((~np.isnan(values)).sum()),
        "missing_share": float(np.isnan(values).mean()) if rows else 0.0,
        "mean": float(present.mean()) if len(present) else None,
        "std": float(present.std()) if len(present) else None,
        "min": float(present.min()) if len(present) else None,
        "max": float(present.max()) if len(present) else None,
        "median_abs": float(np.median(np.abs(present))) if len(present) else None,
        # Of the non-zero values: a column that is mostly 0 (a status code) has a median |value| of
        # 0 or 1 from week to week, which read as a 0x "unit change" in quiet weeks.
        "median_abs_nonzero": float(np.median(np.abs(nonzero))) if len(nonzero := present[present != 0]) else None,
        "psi_edges": psi_edges(present, bins).tolist(),
        "sampled": sampled,
    }
    return summary, present


def permutation_importance_summary(model, X: pd.DataFrame, y: np.ndarray, random_state: int, repeats: int = 5) -> dict:
    """Drop in holdout ROC AUC when each feature is shuffled (mean, std, 95% interval)."""
    from sklearn.inspection import permutation_importance

    result = permutation_importance(
        model, X, y, scoring="roc_auc", n_repeats=repeats, random_state=random_state, n_jobs=1
    )
    out = {}
    for i, col in enumerate(X.columns):
        mean, std = float(result.importances_mean[i]), float(result.importances_std[i])
        half = 1.96 * std / np.sqrt(repeats)
        out[col] = {"mean": mean, "std": std, "ci_low": mean - half, "ci_high": mean + half}
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["mean"]))


def reference_columns(
    train: pd.DataFrame, numeric: list[str], categorical: list[str], m, rng: np.random.Generator
) -> tuple[dict[str, dict], list[np.ndarray], list[np.ndarray]]:
    """Per column its summary (numeric) or counts (categorical), and the sorted reference sample
    as (column name, value) arrays."""
    columns: dict[str, dict] = {}
    sample_cols, sample_vals = [], []
    for col in numeric:
        summary, present = _numeric_summary(
            numeric_values(train[col]), len(train), m.reference_sample_size, m.psi_bins, rng
        )
        columns[col] = summary
        sample_cols.append(np.full(len(present), col, dtype=object))
        sample_vals.append(present)
    for col in categorical:
        counts = value_counts(train[col])
        kept = sum(counts.values())
        columns[col] = {
            "kind": "categorical",
            "n": kept,
            "missing_share": 1 - kept / len(train) if len(train) else 0.0,
            "counts": dict(sorted(counts.items())),
        }
    return columns, sample_cols, sample_vals


def reference_for(*args, **kwargs) -> dict:
    """The reference a training run stores with its version (see build_profile's arguments): the
    files, the manifest's entry naming them, and the permutation importance."""
    profile, sample = build_profile(*args, **kwargs)
    return {
        "files": {PROFILE: json.dumps(profile, indent=1).encode(), SAMPLE: sample},
        "manifest": {
            "profile": PROFILE,
            "sample": SAMPLE,
            "exact": profile["exact"],
            "important_features": profile["important_features"],
        },
        "importance": profile["importance"],
    }


def build_profile(
    config: PipelineConfig,
    schema,
    train: pd.DataFrame,
    holdout_X: pd.DataFrame,
    holdout_y: np.ndarray,
    holdout_scores: np.ndarray,
    model,
    rows_per_day: float,
    threshold: float | None = None,
) -> tuple[dict, bytes]:
    """The profile (JSON-able) and the sorted reference sample (Parquet bytes)."""
    from sklearn.isotonic import IsotonicRegression

    m = config.monitoring
    rng = np.random.default_rng(m.random_state)
    columns, sample_cols, sample_vals = reference_columns(train, schema.numeric, schema.categorical, m, rng)
    score_summary, score_sorted = _numeric_summary(
        np.asarray(holdout_scores, dtype="float64"), len(holdout_scores), m.reference_sample_size, m.psi_bins, rng
    )
    sample_cols.append(np.full(len(score_sorted), SCORE_COLUMN, dtype=object))
    sample_vals.append(score_sorted)

    # CBPE needs calibrated probabilities: an isotonic map fitted on the holdout, which
    # the model did not train on.
    iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(holdout_scores, holdout_y)
    importance = permutation_importance_summary(model, holdout_X, holdout_y, config.training.random_state)
    pca, errors = _multivariate(config, schema.numeric, train, holdout_X, rng)
    if pca:
        sample_cols.append(np.full(len(errors), multivariate.ERROR_COLUMN, dtype=object))
        sample_vals.append(errors)
    top = [f for f, v in importance.items() if v["mean"] > 0][: m.policy.important_features]
    profile = {
        "format": 1,
        "rows": int(len(train)),
        "rows_per_day_median": float(rows_per_day),
        "sample_cap": m.reference_sample_size,
        "exact": not any(c.get("sampled") for c in columns.values()) and not score_summary["sampled"],
        "columns": columns,
        "score": {
            **score_summary,
            "source": "holdout",
            "rows": int(len(holdout_scores)),
            "positive_rate": float(np.mean(holdout_y)),
        },
        "calibration": {"x": iso.X_thresholds_.tolist(), "y": iso.y_thresholds_.tolist()},
        "importance": importance,
        "important_features": top,
        "threshold": config.scoring.threshold if threshold is None else threshold,
        "multivariate": pca,
        "attribution": attribution.reference(model, holdout_X, config.training.random_state)
        if len(holdout_X)
        else None,
    }
    table = pa.table(
        {
            "column": pa.array(np.concatenate(sample_cols), type=pa.string()),
            "value": pa.array(np.concatenate(sample_vals), type=pa.float64()),
        }
    )
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return profile, buf.getvalue()


def _multivariate(config, numeric: list[str], train, holdout_X, rng) -> tuple[dict | None, np.ndarray]:
    """The PCA model of the numeric features and the holdout's sorted per-row errors (capped like
    every reference column); None with fewer than two numeric features."""
    mv = config.monitoring.multivariate
    if not mv.enabled or len(numeric) < 2 or not len(holdout_X):
        return None, np.array([])
    matrix = np.column_stack([numeric_values(train[c]) for c in numeric])
    model, errors = multivariate.fit(
        matrix, np.column_stack([numeric_values(holdout_X[c]) for c in numeric]), numeric, mv.variance
    )
    cap = config.monitoring.reference_sample_size
    return model, errors if len(errors) <= cap else np.sort(rng.choice(errors, size=cap, replace=False))


def read_sample(data: bytes) -> dict[str, np.ndarray]:
    """Sorted reference values per column."""
    table = pq.read_table(io.BytesIO(data))
    frame = table.to_pandas()
    return {
        col: np.sort(group["value"].to_numpy(dtype="float64")) for col, group in frame.groupby("column", sort=False)
    }


def calibrate(profile: dict, scores: np.ndarray) -> np.ndarray:
    """The champion's scores mapped to calibrated probabilities of the positive class."""
    cal = profile["calibration"]
    return np.interp(np.asarray(scores, dtype="float64"), cal["x"], cal["y"])
