"""Holdout metrics of a binary classifier, and the names the gate may put floors and ceilings on."""

from __future__ import annotations

import numpy as np

# Every metric classification_metrics returns that a gate may name; lower is better for brier.
METRIC_NAMES = ("roc_auc", "pr_auc", "f1", "precision", "recall", "brier", "accuracy")
LOWER_IS_BETTER = frozenset({"brier"})


def classification_metrics(y_true: np.ndarray, score: np.ndarray, threshold: float) -> dict:
    """Holdout metrics; pure function of labels and scores."""
    from sklearn import metrics as skm

    y_true = np.asarray(y_true, dtype="int64")
    score = np.asarray(score, dtype="float64")
    if len(np.unique(y_true)) < 2:
        raise ValueError("holdout has a single class; ROC/PR AUC are undefined")
    pred = (score >= threshold).astype("int64")
    tn, fp, fn, tp = skm.confusion_matrix(y_true, pred, labels=[0, 1]).ravel()
    return {
        "roc_auc": float(skm.roc_auc_score(y_true, score)),
        "pr_auc": float(skm.average_precision_score(y_true, score)),
        "f1": float(skm.f1_score(y_true, pred, zero_division=0)),
        "precision": float(skm.precision_score(y_true, pred, zero_division=0)),
        "recall": float(skm.recall_score(y_true, pred, zero_division=0)),
        "brier": float(skm.brier_score_loss(y_true, score)),
        "accuracy": float(skm.accuracy_score(y_true, pred)),
        "threshold": float(threshold),
        "rows": int(len(y_true)),
        "positives": int(y_true.sum()),
        "confusion": {"tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)},
    }
