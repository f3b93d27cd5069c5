"""Fairness across the groups of each sensitive attribute: per group count, selection rate,
TPR, FPR and precision; disparities (demographic-parity ratio, equal-opportunity difference)
over the groups large enough to judge. Pure functions."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pandas as pd

from pipeline.core.settings import FairnessConfig


def group_labels(values: pd.Series, edges: tuple[float, ...] | None) -> pd.Series:
    if edges:
        numeric = pd.to_numeric(values, errors="coerce")
        bounds = [-np.inf, *edges, np.inf]
        names = [f"< {edges[0]:g}"] + [f"{a:g}–{b:g}" for a, b in itertools.pairwise(edges)] + [f">= {edges[-1]:g}"]
        labels = pd.cut(numeric, bounds, right=False, labels=names).astype(object)
    else:
        labels = values.astype(object).map(lambda v: None if v is None or v != v else str(v))
    return labels.where(labels.notna(), "(missing)").astype(str)


def _rates(y: np.ndarray, pred: np.ndarray) -> dict:
    pos, neg = y == 1, y == 0
    return {
        "count": int(len(y)),
        "selection_rate": float(pred.mean()) if len(y) else None,
        "tpr": float(pred[pos].mean()) if pos.any() else None,
        "fpr": float(pred[neg].mean()) if neg.any() else None,
        "precision": float(y[pred].mean()) if pred.any() else None,
    }


def fairness_report(
    frame: pd.DataFrame, y: np.ndarray, pred: np.ndarray, attributes: tuple[str, ...], config: FairnessConfig
) -> dict:
    y, pred = np.asarray(y, dtype="int64"), np.asarray(pred, dtype=bool)
    out: dict[str, dict[str, Any]] = {}
    for attr in attributes:
        if attr not in frame.columns:
            out[attr] = {"error": f"column {attr} is not in the evaluation data"}
            continue
        labels = group_labels(frame[attr], config.bins.get(attr)).to_numpy()
        groups = []
        for g in sorted(set(labels)):
            mask = labels == g
            groups.append(
                {"group": g, **_rates(y[mask], pred[mask]), "too_small": bool(mask.sum() < config.min_group_size)}
            )
        judged = [g for g in groups if not g["too_small"]]
        sel = [g["selection_rate"] for g in judged if g["selection_rate"] is not None]
        tpr = [(g["tpr"], g["group"]) for g in judged if g["tpr"] is not None]
        out[attr] = {
            "groups": groups,
            "demographic_parity_ratio": (min(sel) / max(sel)) if sel and max(sel) > 0 else None,
            "equal_opportunity_difference": (max(tpr)[0] - min(tpr)[0]) if len(tpr) > 1 else None,
            "lowest_tpr_group": min(tpr)[1] if tpr else None,
            "highest_tpr_group": max(tpr)[1] if tpr else None,
            "lowest_selection_group": min(judged, key=lambda g: g["selection_rate"])["group"] if judged else None,
            "highest_selection_group": max(judged, key=lambda g: g["selection_rate"])["group"] if judged else None,
            "too_small_groups": [g["group"] for g in groups if g["too_small"]],
        }
    return out


def fairness_breaches(report: dict, config: FairnessConfig) -> list[str]:
    reasons = []
    for attr, r in report.items():
        if "error" in r:
            reasons.append(f"fairness: {r['error']}")
            continue
        ratio, diff = r["demographic_parity_ratio"], r["equal_opportunity_difference"]
        if (
            config.min_demographic_parity_ratio is not None
            and ratio is not None
            and ratio < config.min_demographic_parity_ratio
        ):
            reasons.append(
                f"fairness: {attr} demographic-parity ratio {ratio:.3f} < {config.min_demographic_parity_ratio} "
                f"(group {r['lowest_selection_group']!r} vs {r['highest_selection_group']!r})"
            )
        if (
            config.max_equal_opportunity_difference is not None
            and diff is not None
            and diff > config.max_equal_opportunity_difference
        ):
            reasons.append(
                f"fairness: {attr} equal-opportunity difference {diff:.3f} > "
                f"{config.max_equal_opportunity_difference} (group {r['lowest_tpr_group']!r} TPR vs "
                f"{r['highest_tpr_group']!r})"
            )
    return reasons
