"""Champion vs candidate on the same rows: metrics with paired-bootstrap intervals. Pure."""

from __future__ import annotations

import numpy as np
from sklearn import metrics as skm

_SCORE_METRICS = {"roc_auc": skm.roc_auc_score, "pr_auc": skm.average_precision_score}
_PRED_METRICS = {
    "f1": skm.f1_score,
    "precision": skm.precision_score,
    "recall": skm.recall_score,
    "accuracy": skm.accuracy_score,
}


def metric_value(name: str, y: np.ndarray, score: np.ndarray, threshold: float) -> float:
    if name in _SCORE_METRICS:
        return float(_SCORE_METRICS[name](y, score))
    pred = (score >= threshold).astype(int)
    if name in ("precision", "f1"):
        return float(_PRED_METRICS[name](y, pred, zero_division=0))
    return float(_PRED_METRICS[name](y, pred))


def paired_bootstrap(
    y: np.ndarray,
    candidate: np.ndarray,
    champion: np.ndarray,
    metric: str,
    candidate_threshold: float,
    champion_threshold: float,
    resamples: int,
    confidence: float,
    seed: int,
) -> dict:
    """Resample holdout rows (the same rows for both models) and take percentile intervals of
    each model's metric and of the difference candidate - champion."""
    y = np.asarray(y, dtype="int64")
    rng = np.random.default_rng(seed)
    cand, champ, diff = [], [], []
    for _ in range(resamples):
        idx = rng.integers(0, len(y), len(y))
        if y[idx].min() == y[idx].max():
            continue
        a = metric_value(metric, y[idx], candidate[idx], candidate_threshold)
        b = metric_value(metric, y[idx], champion[idx], champion_threshold)
        cand.append(a)
        champ.append(b)
        diff.append(a - b)
    lo, hi = (1 - confidence) / 2 * 100, (1 + confidence) / 2 * 100

    def interval(values):
        return [float(np.percentile(values, lo)), float(np.percentile(values, hi))]

    point_c = metric_value(metric, y, candidate, candidate_threshold)
    point_b = metric_value(metric, y, champion, champion_threshold)
    return {
        "metric": metric,
        "candidate": point_c,
        "champion": point_b,
        "difference": point_c - point_b,
        "candidate_ci": interval(cand),
        "champion_ci": interval(champ),
        "difference_ci": interval(diff),
        "resamples": len(diff),
        "confidence": confidence,
        "seed": seed,
    }


def metric_intervals(
    y: np.ndarray,
    score: np.ndarray,
    threshold: float,
    metrics: tuple[str, ...],
    resamples: int,
    confidence: float,
    seed: int,
) -> dict[str, list[float]]:
    """Percentile bootstrap intervals of one model's holdout metrics (the model card reports them)."""
    y = np.asarray(y, dtype="int64")
    rng = np.random.default_rng(seed)
    values: dict[str, list[float]] = {m: [] for m in metrics}
    for _ in range(resamples):
        idx = rng.integers(0, len(y), len(y))
        if y[idx].min() == y[idx].max():
            continue
        for m in metrics:
            values[m].append(metric_value(m, y[idx], score[idx], threshold))
    lo, hi = (1 - confidence) / 2 * 100, (1 + confidence) / 2 * 100
    return {m: [float(np.percentile(v, lo)), float(np.percentile(v, hi))] for m, v in values.items() if v}
