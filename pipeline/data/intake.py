"""Intake over days: a day's delivery with the labels that arrive that day, a training window's
deliveries and labels, and its validation (days that fail are quarantined and left out)."""

from __future__ import annotations

import concurrent.futures
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
from pipeline.data.ingest import ingest_day, ingest_labels, stage
from pipeline.data.snapshot import labelled_window
from pipeline.data.validation import require_validated, staged_deliveries, validate_day, validate_days
from pipeline.ops import progress
from pipeline.ops.threads import threads_per_task

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
    already published and validated are kept unless `force`. Days are independent: after the
    first (which builds the source's split and the contract), they run on the task's threads."""
    days = labelled_window(config, as_of)
    progress.start("ingest window", len(days))

    def one(numbered: tuple[int, dt.date]) -> tuple[str, dict]:
        i, day = numbered
        progress.advance("ingest window", day.isoformat())
        labels = layout.labels_partition(config.dataset.name, day)
        if not force and storage.partition_exists(labels):
            try:
                require_validated(config, storage, day)
                return "kept", {"day": day.isoformat()}
            except (ValidationFailed, PartitionNotFound):
                pass
        try:
            done = stage(config, storage, day)
        except NoRowsForDay:
            raise
        except IngestError as exc:  # quarantined; the snapshot leaves the day out and says so
            log.error("ingest window: day %d/%d (%s) rejected: %s", i, len(days), day, exc)
            return "rejected", {"day": day.isoformat(), "error": str(exc)}
        ingest_labels(config, storage, day, as_of=as_of, staged=done)
        log.info("ingest window: day %d/%d (%s) %d rows staged", i, len(days), day, done.result["rows"])
        return "staged", done.result

    numbered = list(enumerate(days, 1))
    outcomes = [one(numbered[0])]
    workers = min(2, threads_per_task(config))
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ingest") as pool:
        outcomes += list(pool.map(one, numbered[1:]))
    progress.finish("ingest window")
    staged = [r["day"] for kind, r in outcomes if kind == "staged"]
    return {
        "as_of": as_of.isoformat(),
        "window": [days[0].isoformat(), days[-1].isoformat()],
        "staged_days": len(staged),
        "kept_days": sum(1 for kind, _ in outcomes if kind == "kept"),
        "rejected_days": [r for kind, r in outcomes if kind == "rejected"],
        "rows_staged": sum(r["rows"] for kind, r in outcomes if kind == "staged"),
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
