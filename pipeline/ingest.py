"""Ingestion: the day's batch from the source into ``raw/<dataset>/dt=YYYY-MM-DD/``.

Labels arrive later than features (``batching.label_delay_days``), so they are a
separate partition, published only once they are due.
"""
from __future__ import annotations

import datetime as dt
import logging

import pyarrow as pa

from . import layout
from .errors import PipelineError
from .config import PipelineConfig
from .source import SourceError, coerce_types, day_rows, read_source_text, resolve_schema
from .storage import Storage

log = logging.getLogger(__name__)


class IngestError(PipelineError, ValueError):
    """The day's batch could not be ingested; the message names the problem."""


class LabelsNotAvailable(IngestError):
    """Labels for that day are not due yet."""


class NoRowsForDay(IngestError):
    """The source has no rows for that day."""


def _table(frame) -> pa.Table:
    return pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False)


def _sorted_by_id(frame, id_column: str):
    return frame.sort_values(id_column, kind="mergesort").reset_index(drop=True)


def ingest_day(config: PipelineConfig, storage: Storage, day: dt.date) -> dict:
    """Publish the day's batch (id, features, event time, PII; no target) as a raw partition.

    A rerun replaces the partition completely. Values that do not fit their
    column send the day's rows, as text, to quarantine and raise.
    """
    ds = config.dataset
    text = read_source_text(ds, storage)
    schema = resolve_schema(ds, text)
    rows = day_rows(ds, text, day)
    if rows.empty:
        raise NoRowsForDay(f"source {ds.source.uri} has no rows for {day} (dataset {ds.name})")
    key = layout.raw_partition(ds.name, day)
    try:
        typed = coerce_types(rows, schema, schema.batch_columns)
    except SourceError as exc:
        q_key = layout.quarantine_partition(ds.name, day)
        reason = {"stage": "ingest", "day": day.isoformat(), "error": str(exc)}
        storage.write_partition(q_key, {"part-00000.parquet": _table(rows.astype("str"))},
                                manifest={"reason": reason},
                                extra_files={"validation_result.json": _json(reason)})
        raise IngestError(f"{day}: batch quarantined at {storage.uri(q_key)}: {exc}") from exc
    return publish_batch(config, storage, day, typed, schema, source=ds.source.uri)


def publish_batch(config: PipelineConfig, storage: Storage, day: dt.date, typed, schema,
                  source: str, extra: dict | None = None) -> dict:
    """Publish a typed daily batch as the day's raw partition (replacing any earlier one)."""
    ds = config.dataset
    key = layout.raw_partition(ds.name, day)
    typed = _sorted_by_id(typed.loc[:, list(schema.batch_columns)], schema.id_column)
    manifest = storage.write_partition(
        key, {"part-00000.parquet": _table(typed)},
        manifest={"dataset": ds.name, "day": day.isoformat(), "source": source,
                  "schema": schema.to_dict(), **(extra or {})},
    )
    log.info("ingested %s rows for %s into %s", len(typed), day, storage.uri(key))
    return {"day": day.isoformat(), "partition": storage.uri(key), "rows": int(len(typed)),
            "publish_id": manifest["publish_id"]}


def publish_labels(config: PipelineConfig, storage: Storage, day: dt.date, typed, schema, as_of: dt.date,
                   extra: dict | None = None) -> dict:
    """Publish the labels of `day` (id + target), known as of `as_of`."""
    ds = config.dataset
    typed = _sorted_by_id(typed.loc[:, [schema.id_column, schema.target_column]], schema.id_column)
    key = layout.labels_partition(ds.name, day)
    storage.write_partition(key, {"part-00000.parquet": _table(typed)},
                            manifest={"dataset": ds.name, "day": day.isoformat(), "known_as_of": as_of.isoformat(),
                                      **(extra or {})})
    return {"day": day.isoformat(), "partition": storage.uri(key), "rows": int(len(typed))}


def ingest_labels(config: PipelineConfig, storage: Storage, day: dt.date, as_of: dt.date) -> dict:
    """Publish the labels of `day`, which are known as of `as_of`."""
    ds = config.dataset
    due = day + dt.timedelta(days=ds.batching.label_delay_days)
    if due > as_of:
        raise LabelsNotAvailable(f"labels of {day} arrive on {due}, after {as_of}")
    text = read_source_text(ds, storage)
    schema = resolve_schema(ds, text)
    rows = day_rows(ds, text, day)
    if rows.empty:
        raise NoRowsForDay(f"source {ds.source.uri} has no rows for {day} (dataset {ds.name})")
    typed = coerce_types(rows, schema, [schema.id_column, schema.target_column])
    missing = typed[schema.target_column].isna()
    if missing.any():
        raise IngestError(f"{day}: {int(missing.sum())} row(s) have no value in target column "
                          f"{schema.target_column!r} (rows {list(rows.index[missing][:5])})")
    return publish_labels(config, storage, day, typed, schema, as_of)


def _json(value) -> bytes:
    import json

    return json.dumps(value, indent=2, sort_keys=True, default=str).encode()
