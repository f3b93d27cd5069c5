"""Batch scoring: the champion scores a validated day into ``predictions/<model>/dt=YYYY-MM-DD/``.

Output columns (stable for analysts; one row per input row):
    <id column>    the input row's id
    score          float64, probability of the positive class
    prediction     int8, 1 when score >= the model's threshold (the positive class), else 0
    model_version  string, the registry version that produced the row
    scored_at      timestamp (UTC) of the scoring run
    decided_by     string, which alias decided the row: champion, or challenger (canary rows)
    threshold      float64, the decision threshold of the model that decided the row
    input_publish_id  string, the publish id of the raw partition the row was scored from

A day is decided once: re-scoring it (a backfill, a cleared task, a re-delivery) uses the models that
decided it then, recorded in its partition's manifest, not today's champion; a day scored for the
first time is decided by the champion in force at the end of that day (the registry history). Scoring it with another
version asked for explicitly keeps the previous decisions readable under
``predictions_revisions/<model>/dt=…/rev=<publish id>/``, lists every revision in the manifest, and
records the change in the audit trail.

With a `challenger` alias, the challenger also scores every row into
``predictions_shadow/<model>/dt=…/`` (same schema, decided_by = "shadow"), which is never the
production decision; with ``scoring.canary_share`` > 0 that share of rows, chosen by a stable
hash of the row key, is decided by the challenger in the production partition.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time
import uuid

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.core import layout
from pipeline.core.errors import RegistryError
from pipeline.core.settings import PipelineConfig
from pipeline.core.storage import Storage
from pipeline.data.source import Schema
from pipeline.data.validation import require_validated
from pipeline.model import registry
from pipeline.model.features import feature_frame

log = logging.getLogger(__name__)

OUTPUT_COLUMNS = ("score", "prediction", "model_version", "scored_at", "decided_by")


def canary_mask(keys: pd.Series, share: float) -> np.ndarray:
    """Rows routed to the challenger: a stable hash of the row key below `share`, so the same
    rows go the same way on every rerun (and on every day a key recurs)."""
    if share <= 0:
        return np.zeros(len(keys), dtype=bool)
    unit = np.array(
        [int.from_bytes(hashlib.blake2b(str(k).encode(), digest_size=8).digest(), "big") / 2**64 for k in keys.tolist()]
    )
    return unit < share


def prediction_table(
    ids: pd.Series,
    id_column: str,
    score: np.ndarray,
    prediction: np.ndarray,
    versions: np.ndarray | str,
    scored_at: dt.datetime,
    decided_by: np.ndarray | str,
    threshold: np.ndarray | float,
    input_publish_id: str,
) -> pa.Table:
    n = len(ids)
    id_array = pa.array(ids.to_numpy() if ids.dtype != object else ids.tolist())

    def as_array(v: np.ndarray | str) -> pa.Array:
        # One value for the whole range (the usual case) is repeated by Arrow, not built per row.
        if isinstance(v, str):
            return pa.repeat(pa.scalar(v, pa.string()), n)
        return pa.array(np.asarray(v, dtype=object), type=pa.string())

    return pa.table(
        {
            id_column: id_array,
            "score": pa.array(np.asarray(score, dtype="float64")),
            "prediction": pa.array(np.asarray(prediction).astype("int8")),
            "model_version": as_array(versions),
            "scored_at": pa.repeat(pa.scalar(scored_at, pa.timestamp("us", tz="UTC")), n),
            "decided_by": as_array(decided_by),
            "threshold": (
                pa.array(threshold, type=pa.float64())
                if isinstance(threshold, np.ndarray)
                else pa.repeat(pa.scalar(float(threshold), pa.float64()), n)
            ),
            "input_publish_id": pa.repeat(pa.scalar(input_publish_id, pa.string()), n),
        }
    )


_MODELS: dict[tuple[str, str, str], tuple] = {}


def _model(storage: Storage, model_name: str, version: str):
    """The estimator and its manifest, loaded once per process (single-task scoring loops over ranges)."""
    cache_key = (storage.root_uri, model_name, version)
    if cache_key not in _MODELS:
        _MODELS.clear()
        _MODELS[cache_key] = registry.load_model(storage, model_name, version)
    return _MODELS[cache_key]


def _score_with(storage: Storage, model_name: str, version: str, frame: pd.DataFrame) -> tuple[np.ndarray, float]:
    estimator, manifest = _model(storage, model_name, version)
    schema = Schema.from_dict(manifest["schema"])
    return estimator.predict_proba(feature_frame(frame, schema))[:, 1], float(manifest["threshold"])


def _ranges(storage: Storage, raw_key: str, raw_manifest: dict, rows_per_task: int) -> list[dict]:
    """Row-group ranges of the day's Parquet files, each about `rows_per_task` rows (whole row
    groups; a range never spans two files)."""
    from pipeline.core.storage import check_row_count, partition_file_checked

    ranges: list[dict] = []
    for name in raw_manifest["files"]:
        if not name.endswith(".parquet"):
            continue
        with partition_file_checked(storage.uri(raw_key), name, "ingest and validate the day again"):
            meta = pq.ParquetFile(storage.open_input(f"{raw_key}/{name}")).metadata
        first, rows = 0, 0
        for rg in range(meta.num_row_groups):
            rows += meta.row_group(rg).num_rows
            if rows >= rows_per_task or rg == meta.num_row_groups - 1:
                ranges.append({"part": len(ranges), "file": name, "row_groups": [first, rg + 1], "rows": rows})
                first, rows = rg + 1, 0
    check_row_count(storage.uri(raw_key), raw_manifest, sum(r["rows"] for r in ranges))
    return ranges


def jobs(plan: dict) -> list[dict]:
    """The plan as one job per row-group range, for an orchestrator to map over."""
    return [
        {
            "plan": plan,
            "range": rng,
            "label": f"part {rng['part']}: {rng['file']} row groups {rng['row_groups'][0]}-{rng['row_groups'][1] - 1}",
        }
        for rng in plan["ranges"]
    ]


def plan_scoring(config: PipelineConfig, storage: Storage, day: dt.date, version: str | None = None) -> dict:
    """What to score and with which models, fixed once so every range task agrees: the champion
    (and challenger) versions, the scoring time, the input version and its row-group ranges."""
    model_name = config.model_name
    raw_key = layout.raw_partition(config.dataset.name, day)
    raw_manifest = require_validated(config, storage, day)
    decided = _decided(storage, model_name, day)
    if version is not None:  # asked for explicitly: that model alone
        if not registry.version_exists(storage, model_name, version):
            raise RegistryError(f"{model_name} has no version {version!r} (see `python -m pipeline models list`)")
        challenger = None
    elif decided is not None:  # the day was decided already: by the models in force then, not today's
        version, challenger = decided["model_version"], decided.get("challenger_version")
    else:  # first decided now: the champion in force at the day's end (a backfill), else today's
        end_of_day = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), dt.UTC)
        version = registry.champion_at(storage, model_name, end_of_day) or registry.champion_version(
            storage, model_name
        )
        challenger = (registry.get_alias(storage, model_name, registry.CHALLENGER) or {}).get("version")
    challenger = challenger if challenger and challenger != version else None
    ranges = _ranges(storage, raw_key, raw_manifest, config.scoring.rows_per_task)
    plan = {
        "day": day.isoformat(),
        "model": model_name,
        "model_version": version,
        "challenger_version": challenger,
        "scored_at": dt.datetime.now(dt.UTC).isoformat(),
        "input_partition": storage.uri(raw_key),
        "input_publish_id": raw_manifest["publish_id"],
        "token": uuid.uuid4().hex[:12],
        "rows": sum(r["rows"] for r in ranges),
        "ranges": ranges,
        "decided": decided,
    }
    log.info(
        "scoring plan for %s: %d rows in %d range(s) of ~%d rows, %s %s%s",
        day,
        plan["rows"],
        len(ranges),
        config.scoring.rows_per_task,
        model_name,
        version,
        f", challenger {challenger}" if challenger else "",
    )
    return plan


def _decided(storage: Storage, model_name: str, day: dt.date) -> dict | None:
    """The day's current decision (its partition's manifest, trimmed), if it was scored before."""
    key = layout.predictions_partition(model_name, day)
    if not storage.partition_exists(key):
        return None
    manifest = storage.read_manifest(key)
    fields = ("model_version", "challenger_version", "publish_id", "input_publish_id", "scored_at", "threshold")
    return {k: manifest.get(k) for k in fields} | {"revisions": manifest.get("revisions", [])}


def _keep_revision(storage: Storage, plan: dict, version: str, reason: str, actor: str | None) -> dict:
    """Before another model's decisions replace the day's: keep the current ones readable under
    predictions_revisions/ and say so in the audit trail. Returns what the new manifest records."""
    from pipeline.ops import audit

    decided, model_name, day = plan["decided"], plan["model"], dt.date.fromisoformat(plan["day"])
    revisions = list(decided["revisions"])
    if decided["model_version"] != version:
        kept = layout.predictions_revision(model_name, day, decided["publish_id"])
        storage.copy_partition(layout.predictions_partition(model_name, day), kept)
        revisions.append(
            {**{k: decided[k] for k in ("model_version", "publish_id", "scored_at")}, "uri": storage.uri(kept)}
        )
        audit.record(
            storage,
            "rescoring",
            f"{model_name} {plan['day']}: decisions of {decided['model_version']} replaced by {version}",
            why=reason or "re-scored with another model version on request",
            actor=actor,
            day=plan["day"],
            previous_version=decided["model_version"],
            version=version,
            kept_revision=storage.uri(kept),
        )
    extra: dict = {"revisions": revisions}
    if decided["input_publish_id"] != plan["input_publish_id"]:
        log.warning("%s was re-delivered after it was scored: scoring the new delivery", plan["input_partition"])
        extra["previous_input_publish_id"] = decided["input_publish_id"]
    return extra


def _part_name(part: int) -> str:
    return f"part-{part:05d}.parquet"


def score_range(config: PipelineConfig, storage: Storage, plan: dict, rng: dict) -> dict:
    """Score one row-group range with the planned model(s) and stage the part (not yet visible)."""
    day = dt.date.fromisoformat(plan["day"])
    raw_key = layout.raw_partition(config.dataset.name, day)
    started = time.perf_counter()
    first, stop = rng["row_groups"]
    frame = (
        pq.ParquetFile(storage.open_input(f"{raw_key}/{rng['file']}"))
        .read_row_groups(list(range(first, stop)))
        .to_pandas()
    )
    model_name, version, challenger = plan["model"], plan["model_version"], plan["challenger_version"]
    scored_at = dt.datetime.fromisoformat(plan["scored_at"])
    id_column = registry.read_manifest(storage, model_name, version)["schema"]["id_column"]
    ids = frame[id_column]
    score, threshold = _score_with(storage, model_name, version, frame)
    final_score, final_pred = score, score >= threshold
    raw_id = plan["input_publish_id"]
    thresholds: np.ndarray | float = threshold
    versions: np.ndarray | str = version
    decided_by: np.ndarray | str = registry.CHAMPION
    canary_rows, ch_threshold = 0, None
    if challenger:
        ch_score, ch_threshold = _score_with(storage, model_name, challenger, frame)
        storage.stage_part(
            layout.shadow_predictions_partition(model_name, day),
            plan["token"],
            _part_name(rng["part"]),
            prediction_table(
                ids,
                id_column,
                ch_score,
                ch_score >= ch_threshold,
                challenger,
                scored_at,
                "shadow",
                ch_threshold,
                raw_id,
            ),
        )
        canary = canary_mask(ids, config.scoring.canary_share)
        final_score = np.where(canary, ch_score, score)
        final_pred = np.where(canary, ch_score >= ch_threshold, score >= threshold)
        versions = np.where(canary, challenger, version)
        thresholds = np.where(canary, ch_threshold, threshold)
        decided_by = np.where(canary, registry.CHALLENGER, registry.CHAMPION)
        canary_rows = int(canary.sum())
    table = prediction_table(
        ids, id_column, final_score, final_pred, versions, scored_at, decided_by, thresholds, raw_id
    )
    storage.stage_part(layout.predictions_partition(model_name, day), plan["token"], _part_name(rng["part"]), table)
    elapsed = time.perf_counter() - started
    from pipeline.ops import metrics

    metrics.gauge("scoring_rows_per_second", len(frame) / max(elapsed, 1e-6), model=model_name)
    return {
        "part": rng["part"],
        "rows": int(len(frame)),
        "positives": int(np.sum(final_pred)),
        "canary_rows": canary_rows,
        "threshold": threshold,
        "challenger_threshold": ch_threshold,
        "seconds": round(elapsed, 3),
    }


def publish_scoring(
    config: PipelineConfig,
    storage: Storage,
    plan: dict,
    parts: list[dict],
    reason: str = "",
    actor: str | None = None,
) -> dict:
    """Publish the staged parts as the day's prediction partition (and the shadow partition). When
    another model decided the day before, its decisions are kept as a revision first."""
    from pipeline.core.errors import ArtefactError

    day = dt.date.fromisoformat(plan["day"])
    model_name, version, challenger = plan["model"], plan["model_version"], plan["challenger_version"]
    raw_manifest = require_validated(config, storage, day)
    if raw_manifest["publish_id"] != plan["input_publish_id"]:
        raise ArtefactError(
            f"{plan['input_partition']} was republished while it was being scored "
            f"(publish {plan['input_publish_id']} -> {raw_manifest['publish_id']}); rerun scoring"
        )
    names = [_part_name(r["part"]) for r in plan["ranges"]]
    rows = sum(p["rows"] for p in parts)
    if len(parts) != len(plan["ranges"]) or rows != plan["rows"]:
        raise ArtefactError(
            f"scoring of {day}: {len(parts)} of {len(plan['ranges'])} ranges reported, {rows} of "
            f"{plan['rows']} rows; rerun the failed range tasks"
        )
    threshold = parts[0]["threshold"] if parts else None
    common = {
        "model": model_name,
        "day": plan["day"],
        "input_partition": plan["input_partition"],
        "input_publish_id": plan["input_publish_id"],
        "scored_at": plan["scored_at"],
        "ranges": len(plan["ranges"]),
    }
    extra: dict = {}
    if challenger:
        shadow_key = layout.shadow_predictions_partition(model_name, day)
        ch_threshold = parts[0]["challenger_threshold"] if parts else None
        storage.publish_staged(
            shadow_key,
            plan["token"],
            names,
            manifest={**common, "model_version": challenger, "alias": registry.CHALLENGER, "threshold": ch_threshold},
        )
        extra = {
            "challenger_version": challenger,
            "canary_share": config.scoring.canary_share,
            "challenger_threshold": ch_threshold,
            "canary_rows": sum(p["canary_rows"] for p in parts),
            "shadow_partition": storage.uri(shadow_key),
        }
    if plan.get("decided"):
        extra |= _keep_revision(storage, plan, version, reason, actor)
    key = layout.predictions_partition(model_name, day)
    storage.publish_staged(
        key,
        plan["token"],
        names,
        manifest={**common, "model_version": version, "input_rows": rows, "threshold": threshold, **extra},
    )
    from pipeline.ops import metrics

    metrics.incr("rows_scored", rows, model=model_name)
    log.info(
        "scored %d rows of %s with %s %s in %d range(s)%s",
        rows,
        day,
        model_name,
        version,
        len(parts),
        f" (challenger {challenger}: shadow, {extra['canary_rows']} canary rows)" if challenger else "",
    )
    return {
        "day": plan["day"],
        "partition": storage.uri(key),
        "predictions": storage.uri(key),
        "rows": rows,
        "model_version": version,
        "challenger_version": challenger,
        "ranges": len(parts),
        "positive_rate": round(sum(p["positives"] for p in parts) / max(rows, 1), 6),
        "revisions": len(extra.get("revisions", [])),
    }


def score_day(
    config: PipelineConfig,
    storage: Storage,
    day: dt.date,
    version: str | None = None,
    reason: str = "",
    actor: str | None = None,
) -> dict:
    """Plan, score every range and publish, in this one process (the CLI, DVC and small days)."""
    plan = plan_scoring(config, storage, day, version)
    parts = []
    for i, rng in enumerate(plan["ranges"], 1):
        parts.append(score_range(config, storage, plan, rng))
        if len(plan["ranges"]) > 1:
            log.info("scored range %d/%d (%d rows)", i, len(plan["ranges"]), rng["rows"])
    return publish_scoring(config, storage, plan, parts, reason, actor)
