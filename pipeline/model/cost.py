"""Cost of errors: expected cost per 1,000 decisions, and the threshold that minimises it.
Pure functions."""

from __future__ import annotations

import numpy as np

from pipeline.core.settings import CostConfig


def cost_per_1000(y: np.ndarray, score: np.ndarray, threshold: float, cost: CostConfig) -> float:
    y = np.asarray(y, dtype="int64")
    pred = np.asarray(score) >= threshold
    fp = int(np.sum(pred & (y == 0)))
    fn = int(np.sum(~pred & (y == 1)))
    return float(1000 * (fp * cost.false_positive + fn * cost.false_negative) / max(len(y), 1))


def cost_curve(y: np.ndarray, score: np.ndarray, cost: CostConfig, points: int = 201) -> tuple[np.ndarray, np.ndarray]:
    """Expected cost per 1,000 decisions at thresholds spread over the scores' range."""
    y = np.asarray(y, dtype="int64")
    score = np.asarray(score, dtype="float64")
    thresholds = np.unique(np.concatenate([np.linspace(0.0, 1.0, points), [0.5]]))
    order = np.argsort(score)
    s_sorted, y_sorted = score[order], y[order]
    # Rows below each threshold are predicted negative.
    below = np.searchsorted(s_sorted, thresholds, side="left")
    pos_below = np.concatenate([[0], np.cumsum(y_sorted)])[below]
    neg_below = below - pos_below
    fn = pos_below
    fp = (len(y) - y.sum()) - neg_below
    costs = 1000 * (fp * cost.false_positive + fn * cost.false_negative) / max(len(y), 1)
    return thresholds, costs


def choose_threshold(y: np.ndarray, score: np.ndarray, cost: CostConfig) -> dict:
    """The threshold minimising expected cost on (out-of-fold) predictions; ties go to the one
    closest to 0.5."""
    thresholds, costs = cost_curve(y, score, cost)
    best = np.flatnonzero(costs == costs.min())
    i = best[np.argmin(np.abs(thresholds[best] - 0.5))]
    return {
        "threshold": float(thresholds[i]),
        "cost_per_1000": float(costs[i]),
        "cost_at_0.5": float(costs[np.argmin(np.abs(thresholds - 0.5))]),
        "false_positive": cost.false_positive,
        "false_negative": cost.false_negative,
        "curve": {"threshold": thresholds.round(4).tolist(), "cost_per_1000": costs.round(3).tolist()},
    }
