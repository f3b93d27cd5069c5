"""Realized performance (labels that have arrived, joined to the predictions by row key)
and estimated performance for days without labels (confidence-based performance
estimation, the method of NannyML's CBPE: with calibrated probabilities p, the expected
confusion matrix at threshold t is TP = sum(p | score >= t), FP = sum(1 - p | score >= t),
FN = sum(p | score < t), and the expected ROC/PR curves follow from the same sums at
every threshold). Pure functions of arrays."""

from __future__ import annotations

import numpy as np
from sklearn import metrics as skm


def realized_metrics(y: np.ndarray, score: np.ndarray, threshold: float) -> dict:
    y = np.asarray(y, dtype="int64")
    score = np.asarray(score, dtype="float64")
    pred = score >= threshold
    out = {
        "rows": int(len(y)),
        "positive_rate": float(pred.mean()) if len(y) else None,
        "precision": float(skm.precision_score(y, pred, zero_division=0)) if len(y) else None,
        "recall": float(skm.recall_score(y, pred, zero_division=0)) if len(y) else None,
        "roc_auc": None,
        "pr_auc": None,
    }
    if len(np.unique(y)) == 2:
        out["roc_auc"] = float(skm.roc_auc_score(y, score))
        out["pr_auc"] = float(skm.average_precision_score(y, score))
    return out


def estimated_metrics(probability: np.ndarray, score: np.ndarray, threshold: float) -> dict:
    """Expected metrics if `probability` (calibrated) is the chance each row is positive."""
    p = np.asarray(probability, dtype="float64")
    score = np.asarray(score, dtype="float64")
    n = len(p)
    if n == 0:
        return {"rows": 0, "positive_rate": None, "precision": None, "recall": None, "roc_auc": None, "pr_auc": None}
    pred = score >= threshold
    tp, fp, fn = p[pred].sum(), (1 - p[pred]).sum(), p[~pred].sum()
    # Expected curves: walk thresholds from the highest score down, ties together.
    order = np.argsort(-score, kind="mergesort")
    s_sorted, p_sorted = score[order], p[order]
    last_of_tie = np.r_[np.nonzero(np.diff(s_sorted))[0], n - 1]
    tp_cum = np.cumsum(p_sorted)[last_of_tie]
    fp_cum = np.cumsum(1 - p_sorted)[last_of_tie]
    pos, neg = p.sum(), (1 - p).sum()
    roc_auc = pr_auc = None
    if pos > 0 and neg > 0:
        tpr, fpr = np.r_[0, tp_cum / pos], np.r_[0, fp_cum / neg]
        roc_auc = float(np.trapezoid(tpr, fpr))
        precision_k = tp_cum / (tp_cum + fp_cum)
        pr_auc = float(np.sum(np.diff(np.r_[0, tp_cum / pos]) * precision_k))
    return {
        "rows": int(n),
        "positive_rate": float(pred.mean()),
        "precision": float(tp / (tp + fp)) if tp + fp > 0 else 0.0,
        "recall": float(tp / (tp + fn)) if tp + fn > 0 else 0.0,
        "roc_auc": roc_auc,
        "pr_auc": pr_auc,
    }
