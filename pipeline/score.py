"""Batch scoring: the champion scores a validated day into ``predictions/<model>/dt=YYYY-MM-DD/``.

Output columns (stable for analysts; one row per input row):
    <id column>    the input row's id
    score          float64, probability of the positive class
    prediction     int8, 1 when score >= the model's threshold (the positive class), else 0
    model_version  string, the registry version that produced the row
    scored_at      timestamp (UTC) of the scoring run
    decided_by     string, which alias decided the row: champion, or challenger (canary rows)

With a `challenger` alias, the challenger also scores every row into
``predictions_shadow/<model>/dt=…/`` (same schema, decided_by = "shadow"), which is never the
production decision; with ``scoring.canary_share`` > 0 that share of rows, chosen by a stable
hash of the row key, is decided by the challenger in the production partition.
"""
from __future__ import annotations

import datetime as dt
import time
import hashlib
import logging

import numpy as np
import pandas as pd
import pyarrow as pa

from . import layout, registry
from .config import PipelineConfig
from .features import feature_frame
from .source import Schema
from .storage import Storage
from .validation import require_validated

log = logging.getLogger(__name__)

OUTPUT_COLUMNS = ("score", "prediction", "model_version", "scored_at", "decided_by")


def canary_mask(keys: pd.Series, share: float) -> np.ndarray:
    """Rows routed to the challenger: a stable hash of the row key below `share`, so the same
    rows go the same way on every rerun (and on every day a key recurs)."""
    if share <= 0:
        return np.zeros(len(keys), dtype=bool)
    unit = np.array([int.from_bytes(hashlib.blake2b(str(k).encode(), digest_size=8).digest(), "big") / 2 ** 64
                     for k in keys.tolist()])
    return unit < share


def prediction_table(ids: pd.Series, id_column: str, score: np.ndarray, prediction: np.ndarray,
                     versions: np.ndarray | str, scored_at: dt.datetime, decided_by: np.ndarray | str) -> pa.Table:
    n = len(ids)
    id_array = pa.array(ids.to_numpy() if ids.dtype != object else ids.tolist())
    as_array = (lambda v: np.asarray(v, dtype=object) if not isinstance(v, str) else np.full(n, v, dtype=object))
    return pa.table({
        id_column: id_array,
        "score": pa.array(np.asarray(score, dtype="float64")),
        "prediction": pa.array(np.asarray(prediction).astype("int8")),
        "model_version": pa.array(as_array(versions), type=pa.string()),
        "scored_at": pa.array([scored_at] * n, type=pa.timestamp("us", tz="UTC")),
        "decided_by": pa.array(as_array(decided_by), type=pa.string()),
    })


def _score_with(storage: Storage, model_name: str, version: str, frame: pd.DataFrame) -> tuple[np.ndarray, float]:
    estimator, manifest = registry.load_model(storage, model_name, version)
    schema = Schema.from_dict(manifest["schema"])
    return estimator.predict_proba(feature_frame(frame, schema))[:, 1], float(manifest["threshold"])


def score_day(config: PipelineConfig, storage: Storage, day: dt.date, version: str | None = None) -> dict:
    ds = config.dataset
    model_name = config.model_name
    pinned = version is not None
    version = version or registry.champion_version(storage, model_name)
    raw_key = layout.raw_partition(ds.name, day)
    raw_manifest = require_validated(config, storage, day)
    frame = storage.read_partition(raw_key).to_pandas()
    started = time.perf_counter()
    id_column = registry.read_manifest(storage, model_name, version)["schema"]["id_column"]
    ids = frame[id_column]
    score, threshold = _score_with(storage, model_name, version, frame)
    scored_at = dt.datetime.now(dt.timezone.utc)
    challenger = None if pinned else (registry.get_alias(storage, model_name, registry.CHALLENGER) or {}).get("version")
    challenger = challenger if challenger and challenger != version else None
    final_score, final_pred = score, score >= threshold
    versions: np.ndarray | str = version
    decided_by: np.ndarray | str = registry.CHAMPION
    extra: dict = {}
    if challenger:
        ch_score, ch_threshold = _score_with(storage, model_name, challenger, frame)
        shadow_key = layout.shadow_predictions_partition(model_name, day)
        storage.write_partition(shadow_key, {"part-00000.parquet": prediction_table(
            ids, id_column, ch_score, ch_score >= ch_threshold, challenger, scored_at, "shadow")}, manifest={
            "model": model_name, "model_version": challenger, "alias": registry.CHALLENGER, "day": day.isoformat(),
            "input_partition": storage.uri(raw_key), "input_publish_id": raw_manifest["publish_id"],
            "threshold": ch_threshold, "scored_at": scored_at.isoformat()})
        canary = canary_mask(ids, config.scoring.canary_share)
        final_score = np.where(canary, ch_score, score)
        final_pred = np.where(canary, ch_score >= ch_threshold, score >= threshold)
        versions = np.where(canary, challenger, version)
        decided_by = np.where(canary, registry.CHALLENGER, registry.CHAMPION)
        extra = {"challenger_version": challenger, "canary_share": config.scoring.canary_share,
                 "canary_rows": int(canary.sum()), "challenger_threshold": ch_threshold,
                 "shadow_partition": storage.uri(shadow_key)}
    table = prediction_table(ids, id_column, final_score, final_pred, versions, scored_at, decided_by)
    key = layout.predictions_partition(model_name, day)
    storage.write_partition(key, {"part-00000.parquet": table}, manifest={
        "model": model_name,
        "model_version": version,
        "day": day.isoformat(),
        "input_partition": storage.uri(raw_key),
        "input_publish_id": raw_manifest["publish_id"],
        "input_rows": int(len(frame)),
        "threshold": threshold,
        "scored_at": scored_at.isoformat(),
        **extra,
    })
    from .ops import metrics

    elapsed = time.perf_counter() - started
    metrics.incr("rows_scored", len(frame), model=model_name)
    metrics.gauge("scoring_rows_per_second", len(frame) / max(elapsed, 1e-6), model=model_name)
    log.info("scored %d rows of %s with %s %s%s", len(frame), day, model_name, version,
             f" (challenger {challenger}: shadow, {extra['canary_rows']} canary rows)" if challenger else "")
    return {"day": day.isoformat(), "partition": storage.uri(key), "predictions": storage.uri(key),
            "rows": int(len(frame)),
            "model_version": version, "challenger_version": challenger,
            "positive_rate": round(float(np.mean(final_pred)), 6)}
