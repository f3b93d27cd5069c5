"""Intake over days: a day's delivery with the labels that arrive that day, a training window's
deliveries and labels, and its validation (days that fail are quarantined and left out)."""

from __future__ import annotations

import datetime as dt
import logging

from pipeline.core import layout
from pipeline.core.errors import (
    IngestError,
    LabelsNotAvailable,
    NoRowsForDay,
    PartitionNotFound,
    ValidationFailed,
)
from pipeline.core.settings import PipelineConfig
from pipeline.core.storage import Storage
from pipeline.data.data_docs import data_docs_index
from pipeline.data.ingest import ingest_day, ingest_labels
from pipeline.data.snapshot import labelled_window
from pipeline.data.validation import require_validated, staged_deliveries, validate_day, validate_days
from pipeline.ops import progress

log = logging.getLogger(__name__)


def ingest_with_labels(config: PipelineConfig, storage: Storage, day: dt.date) -> dict:
    """The day's batch, plus the labels that arrive that day (of day - label delay)."""
    result = ingest_day(config, storage, day)
    labelled = day - dt.timedelta(days=config.dataset.batching.label_delay_days)
    try:
        result["labels"] = ingest_labels(config, storage, labelled, as_of=day)
    except (LabelsNotAvailable, NoRowsForDay) as exc:  # nothing arrives today; other errors do fail
        log.info("no labels arrive on %s: %s", day, exc)
        result["labels"] = None
    return result


def validate_delivery(config: PipelineConfig, storage: Storage, day: dt.date, delivery_id: str | None) -> dict:
    """Audit the day's staged delivery (the given one, or the latest) and publish or quarantine it.

    A task cleared after a fix still carries the delivery id its first run staged, which was judged
    since (quarantined or published): then the day's delivery is read again and that is audited."""
    if delivery_id and not storage.partition_exists(layout.staging_delivery(config.dataset.name, day, delivery_id)):
        log.warning("%s: delivery %s was judged already; reading the day's delivery again", day, delivery_id)
        delivery_id = ingest_day(config, storage, day)["delivery_id"]
    return validate_day(config, storage, day, delivery_id)


def ingest_window(config: PipelineConfig, storage: Storage, as_of: dt.date, force: bool = False) -> dict:
    """Stage the deliveries and publish the labels of every day in the training window; days
    already published and validated are kept unless `force`."""
    days = labelled_window(config, as_of)
    staged, kept, rejected, rows = [], [], [], 0
    progress.start("ingest window", len(days))
    for i, day in enumerate(days, 1):
        progress.advance("ingest window", day.isoformat())
        labels = layout.labels_partition(config.dataset.name, day)
        if not force and storage.partition_exists(labels):
            try:
                require_validated(config, storage, day)
                kept.append(day.isoformat())
                continue
            except (ValidationFailed, PartitionNotFound):
                pass
        try:
            r = ingest_day(config, storage, day)
        except NoRowsForDay:
            raise
        except IngestError as exc:  # quarantined; the snapshot leaves the day out and says so
            log.error("ingest window: day %d/%d (%s) rejected: %s", i, len(days), day, exc)
            rejected.append({"day": day.isoformat(), "error": str(exc)})
            continue
        ingest_labels(config, storage, day, as_of=as_of)
        rows += r["rows"]
        staged.append(day.isoformat())
        log.info("ingest window: day %d/%d (%s) %d rows staged", i, len(days), day, r["rows"])
    progress.finish("ingest window")
    return {
        "as_of": as_of.isoformat(),
        "window": [days[0].isoformat(), days[-1].isoformat()],
        "staged_days": len(staged),
        "kept_days": len(kept),
        "rejected_days": rejected,
        "rows_staged": rows,
    }


def validate_window(config: PipelineConfig, storage: Storage, as_of: dt.date) -> dict:
    """Audit every staged delivery of the window; quarantine failures, then raise naming all of them."""
    window = labelled_window(config, as_of)
    todo = [d for d in window if staged_deliveries(storage, config.dataset.name, d)]
    log.info("validating %d staged day(s) of the window (%d kept)", len(todo), len(window) - len(todo))
    passed, failures = validate_days(config, storage, todo)
    if failures and not passed and len(failures) == len(window):
        raise ValidationFailed(
            "every day of the window failed validation:\n" + "\n".join(f["message"] for f in failures)
        )
    for failure in failures:  # quarantined: the snapshot leaves these days out and records why
        log.error("window day quarantined: %s", failure["message"])
    return {
        "as_of": as_of.isoformat(),
        "validated_days": len(passed),
        "already_valid_days": len(window) - len(todo),
        "quarantined_days": len(failures),
        "data_docs": data_docs_index(config),
    }
