"""Champion vs challenger on the days the challenger scored in shadow, once labels arrived.
Compared on the rows the champion decided (canary rows have no champion score)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np

from pipeline.core import layout
from pipeline.core.settings import PipelineConfig
from pipeline.core.storage import Storage
from pipeline.model.features import target_vector
from pipeline.monitoring.performance import realized_metrics


def compare_shadow(config: PipelineConfig, storage: Storage, since: dt.date | None = None) -> dict:
    ds, model = config.dataset, config.model_name
    days: list[dict[str, Any]] = []
    for child in storage.list_children(layout.shadow_predictions_root(model)):
        day = layout.day_of(child)
        if day is None or (since and day < since):
            continue
        shadow_key = layout.shadow_predictions_partition(model, day)
        labels_key = layout.labels_partition(ds.name, day)
        prod_key = layout.predictions_partition(model, day)
        if not (storage.partition_exists(shadow_key) and storage.partition_exists(prod_key)):
            continue
        if not storage.partition_exists(labels_key):
            days.append({"day": day.isoformat(), "labels": False})
            continue
        shadow = storage.read_partition(shadow_key).to_pandas()
        prod = storage.read_partition(prod_key).to_pandas()
        labels = storage.read_partition(labels_key).to_pandas()
        id_col = ds.id_column or shadow.columns[0]
        joined = (
            prod[prod["decided_by"] == "champion"][[id_col, "score", "model_version"]]
            .merge(shadow[[id_col, "score", "model_version"]], on=id_col, suffixes=("_champion", "_challenger"))
            .merge(labels, on=id_col)
        )
        y = target_vector(joined[ds.target.column], ds.target.positive_class)
        c_thr = storage.read_manifest(prod_key)["threshold"]
        s_thr = storage.read_manifest(shadow_key)["threshold"]
        days.append(
            {
                "day": day.isoformat(),
                "labels": True,
                "rows": int(len(joined)),
                "champion": joined["model_version_champion"].iloc[0] if len(joined) else None,
                "challenger": joined["model_version_challenger"].iloc[0] if len(joined) else None,
                "y": y,
                "champion_score": joined["score_champion"].to_numpy(),
                "challenger_score": joined["score_challenger"].to_numpy(),
                "thresholds": (c_thr, s_thr),
            }
        )
    labelled = [d for d in days if d["labels"]]
    per_day: list[dict[str, Any]] = []
    out: dict[str, Any] = {"model": model, "shadow_days": len(days), "labelled_days": len(labelled), "per_day": per_day}
    if labelled:
        y = np.concatenate([d["y"] for d in labelled])
        champ = np.concatenate([d["champion_score"] for d in labelled])
        chall = np.concatenate([d["challenger_score"] for d in labelled])
        c_thr, s_thr = labelled[-1]["thresholds"]
        out["champion"] = {"version": labelled[-1]["champion"], **realized_metrics(y, champ, c_thr)}
        out["challenger"] = {"version": labelled[-1]["challenger"], **realized_metrics(y, chall, s_thr)}
    for d in days:
        row = {"day": d["day"], "labels_arrived": d["labels"]}
        if d["labels"]:
            row.update(
                rows=d["rows"],
                champion_roc_auc=realized_metrics(d["y"], d["champion_score"], d["thresholds"][0])["roc_auc"],
                challenger_roc_auc=realized_metrics(d["y"], d["challenger_score"], d["thresholds"][1])["roc_auc"],
            )
        per_day.append(row)
    return out
