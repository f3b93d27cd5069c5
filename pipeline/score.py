"""Batch scoring: the champion scores a validated day into ``predictions/<model>/dt=YYYY-MM-DD/``.

Output columns (stable for analysts; one row per input row):
    <id column>    the input row's id
    score          float64, probability of the positive class
    prediction     int8, 1 when score >= the model's threshold (the positive class), else 0
    model_version  string, the registry version that produced the row
    scored_at      timestamp (UTC) of the scoring run
"""
from __future__ import annotations

import datetime as dt
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

OUTPUT_COLUMNS = ("score", "prediction", "model_version", "scored_at")


def prediction_table(ids: pd.Series, id_column: str, score: np.ndarray, threshold: float,
                     version: str, scored_at: dt.datetime) -> pa.Table:
    n = len(ids)
    id_array = pa.array(ids.to_numpy() if ids.dtype != object else ids.tolist())
    return pa.table({
        id_column: id_array,
        "score": pa.array(np.asarray(score, dtype="float64")),
        "prediction": pa.array((np.asarray(score) >= threshold).astype("int8")),
        "model_version": pa.array([version] * n, type=pa.string()),
        "scored_at": pa.array([scored_at] * n, type=pa.timestamp("us", tz="UTC")),
    })


def score_day(config: PipelineConfig, storage: Storage, day: dt.date, version: str | None = None) -> dict:
    ds = config.dataset
    model_name = config.model_name
    version = version or registry.champion_version(storage, model_name)
    estimator, manifest = registry.load_model(storage, model_name, version)
    schema = Schema.from_dict(manifest["schema"])
    raw_key = layout.raw_partition(ds.name, day)
    raw_manifest = require_validated(config, storage, day)
    frame = storage.read_partition(raw_key).to_pandas()
    score = estimator.predict_proba(feature_frame(frame, schema))[:, 1]
    scored_at = dt.datetime.now(dt.timezone.utc)
    table = prediction_table(frame[schema.id_column], schema.id_column, score, manifest["threshold"],
                             version, scored_at)
    key = layout.predictions_partition(model_name, day)
    storage.write_partition(key, {"part-00000.parquet": table}, manifest={
        "model": model_name,
        "model_version": version,
        "day": day.isoformat(),
        "input_partition": storage.uri(raw_key),
        "input_publish_id": raw_manifest["publish_id"],
        "input_rows": int(len(frame)),
        "threshold": manifest["threshold"],
        "scored_at": scored_at.isoformat(),
    })
    log.info("scored %d rows of %s with %s %s", len(frame), day, model_name, version)
    return {"day": day.isoformat(), "partition": storage.uri(key), "rows": int(len(frame)),
            "model_version": version, "positive_rate": round(float((score >= manifest["threshold"]).mean()), 6)}
