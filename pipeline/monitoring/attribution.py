"""Attribution drift: how much each feature moves the model's scores, then and now.

A feature can keep its distribution while the model comes to lean on it differently (its
interactions with other features changed), and the importance measured at training stops
describing the model's behaviour. Label-free, so it works the week the drift happens: a feature's
attribution is the mean |change in score| when that feature alone is shuffled across rows (the
prediction-side form of permutation importance). At training it is measured on ``RESAMPLES``
resamples of the holdout (``ROWS`` rows each): their mean is the reference, their spread the noise
floor. Each run measures the window's rows once; a feature is flagged when its attribution moved by
more than ``SIGMAS`` noise standard deviations (scaled to the window's size) and by at least
``MIN_CHANGE`` of its reference. Ranked by that distance, in the report and the statistics.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

ROWS = 1000  # rows per measurement: ~25 predictions of 1,000 rows per measurement
RESAMPLES = 12  # reference measurements (the floor's spread)
SIGMAS = 5.0
MIN_CHANGE = 0.25


def measure(model, X: pd.DataFrame, rng: np.random.Generator) -> dict[str, float]:
    """Mean |score change| per feature when it alone is shuffled, on up to ROWS rows of X."""
    sample = X.iloc[rng.choice(len(X), size=min(ROWS, len(X)), replace=False)].reset_index(drop=True)
    base = model.predict_proba(sample)[:, 1]
    out = {}
    for column in X.columns:
        shuffled = sample.copy()
        shuffled[column] = shuffled[column].to_numpy()[rng.permutation(len(sample))]
        out[column] = float(np.mean(np.abs(model.predict_proba(shuffled)[:, 1] - base)))
    return out


def reference(model, X: pd.DataFrame, random_state: int) -> dict:
    """The stored reference: mean and spread over RESAMPLES measurements of the holdout."""
    rng = np.random.default_rng([random_state, 17])
    runs = [measure(model, X.iloc[rng.integers(0, len(X), size=len(X))], rng) for _ in range(RESAMPLES)]
    return {
        "rows": int(min(ROWS, len(X))),
        "mean": {c: float(np.mean([r[c] for r in runs])) for c in X.columns},
        "sd": {c: float(np.std([r[c] for r in runs], ddof=1)) for c in X.columns},
    }


def compare(ref: dict, current: dict[str, float], rows: int) -> list[dict]:
    """Per feature: reference, current, change, noise and flag, most moved first."""
    scale = np.sqrt(ref["rows"] / max(rows, 1))  # a smaller window measures with more noise
    out = []
    for column, before in ref["mean"].items():
        now, noise = current[column], ref["sd"][column] * scale
        change = now - before
        distance = abs(change) / noise if noise > 0 else (np.inf if change else 0.0)
        out.append(
            {
                "feature": column,
                "reference": before,
                "current": now,
                "change": change,
                "noise_sd": noise,
                "distance": float(distance),
                "flagged": bool(distance > SIGMAS and abs(change) >= MIN_CHANGE * max(before, 1e-3)),
            }
        )
    return sorted(out, key=lambda r: -r["distance"])


def for_window(estimator, schema, profile: dict, current: pd.DataFrame, seed: int) -> dict | None:
    """The window's attribution drift; None without a stored reference or rows."""
    from pipeline.model.features import feature_frame

    ref = profile.get("attribution")
    if not ref or not len(current):
        return None
    X = feature_frame(current, schema)
    rows = compare(ref, measure(estimator, X, np.random.default_rng([seed, len(X)])), min(ROWS, len(X)))
    return {"rows": int(min(ROWS, len(X))), "features": rows, "flagged": [r["feature"] for r in rows if r["flagged"]]}


def statistics_rows(result: dict) -> list[dict]:
    return [
        {
            "category": "attribution_drift",
            "feature": r["feature"],
            "statistic": "mean_abs_score_change",
            "value": r["current"],
            "reference_value": r["reference"],
            "noise_p95": r["reference"] + 1.96 * r["noise_sd"],
            "calibrated_flag": r["flagged"],
        }
        for r in result["features"]
    ]
