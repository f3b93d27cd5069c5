"""Ingestion, the *write* of write-audit-publish: a day's delivery is read, checked against
the data contract, typed row by row and staged under ``staging/<dataset>/dt=…/<delivery>/``.

Nothing committed changes here: the audit (:mod:`pipeline.data.validation`) publishes the staged
delivery as ``raw/<dataset>/dt=…/`` or quarantines it. A delivery that cannot be read, lacks
contract columns or has rows that do not fit (text in a number column, missing or
conflicting ids) is quarantined with its verdict under ``quarantine/<dataset>/dt=…/<delivery>/``;
with ``validation.row_policy: quarantine_rows`` only its bad rows are, up to a share.

Labels arrive later than features (``batching.label_delay_days``), so they are a separate
partition, published only once they are due.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import logging

import pyarrow as pa

from pipeline.core import layout
from pipeline.core.errors import IngestError, LabelsNotAvailable, LabelsRejected, NoDelivery, NoRowsForDay, SourceError
from pipeline.core.settings import PipelineConfig
from pipeline.core.storage import Storage
from pipeline.data import contract as contracts
from pipeline.data import privacy, quarantine
from pipeline.data.delivery import read_delivery, resolution_sample
from pipeline.data.reading import Delivery
from pipeline.data.source import is_per_day
from pipeline.data.typed import TypedRows, type_rows, type_table

log = logging.getLogger(__name__)


def _table(frame) -> pa.Table:
    return pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False)


def _sorted_by_id(frame, id_column: str):
    return frame.sort_values(id_column, kind="mergesort").reset_index(drop=True)


def _read(config: PipelineConfig, storage: Storage, day: dt.date):
    try:
        return read_delivery(config, storage, day)
    except NoDelivery as exc:
        raise NoRowsForDay(str(exc)) from exc
    except SourceError as exc:
        where = ""
        if is_per_day(config.dataset.source):
            # Keep what arrived, even unreadable, as evidence.
            import hashlib

            from pipeline.data.delivery import evidence

            # Keep what arrived, within the landing area and the size limit (the rest is named only).
            files, not_kept = evidence(config, storage, day)
            digest = hashlib.sha256(b"".join(files.values()) + "|".join(not_kept).encode()).hexdigest()
            delivery_id = f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S%f}-{digest[:8]}"
            where = quarantine.keep_unread(
                storage, config.dataset.name, day, delivery_id, files, [str(exc), *not_kept], list(files) + not_kept
            )
            mark_rejected(config, storage, day, delivery_id, where, [str(exc)])
            links = {"quarantine": where}
            where = f" Delivery kept in {where}."
        else:
            links = {}
        raise IngestError(f"{day}: delivery cannot be read: {exc}.{where}", links=links) from exc


def mark_rejected(
    config: PipelineConfig, storage: Storage, day: dt.date, delivery_id: str, where: str, reasons: list[str]
) -> None:
    """A day with nothing committed is recorded as quarantined (training leaves it out and says so);
    a day with a committed partition keeps its record: that partition is still the valid one."""
    if storage.partition_exists(layout.raw_partition(config.dataset.name, day)):
        return
    storage.write_json(
        layout.validation_record(config.dataset.name, day),
        {
            "dataset": config.dataset.name,
            "day": day.isoformat(),
            "delivery_id": delivery_id,
            "success": False,
            "stage": "ingest",
            "reasons": reasons,
            "quarantine": where,
            "validated_at": dt.datetime.now(dt.UTC).isoformat(),
        },
    )


def header_problems(contract, columns: list[str], delimiter: str, extra_policy: str) -> list[str]:
    present = set(columns)
    missing = [c for c in contract.required_columns if c not in present]
    extra = [c for c in columns if c not in contract.source_columns]
    problems = []
    if len(columns) == 1 and any(d in columns[0] for d in (";", "\t", "|", ",") if d != delimiter):
        found = next(d for d in (";", "\t", "|", ",") if d != delimiter and d in columns[0])
        problems.append(
            f"the header is one column {columns[0][:60]!r}: the file seems delimited by {found!r}, "
            f"not {delimiter!r} (dataset.source.csv_delimiter)"
        )
        return problems
    for col in missing:
        close = difflib.get_close_matches(col, extra, n=1)
        problems.append(
            f"column {col!r} of contract v{contract.version} is missing"
            + (f" (renamed to {close[0]!r}?)" if close else "")
        )
    if extra and extra_policy == "fail":
        problems.append(
            f"column(s) {extra} are not in contract v{contract.version} "
            "(validation.extra_columns: fail; change the contract with `contract update` to accept them)"
        )
    return problems


def type_delivery(delivery: Delivery, schema, target_column: str | None) -> TypedRows:
    """The delivery typed against the schema: in Arrow when it is held as Arrow and clean, else row
    by row (which names every misfit)."""
    if delivery.table is not None and delivery.lines is not None:
        rows = type_table(delivery.table, delivery.lines, schema, target_column, delivery.row_label)
        if rows is not None:
            return rows
    return type_rows(delivery.text, schema, target_column, delivery.row_label)


@dataclasses.dataclass
class Staged:
    """What staging a day read and typed, so the same day's labels need not read it again."""

    result: dict
    delivery: Delivery
    rows: TypedRows
    ids: tuple[set, str]  # the staged ids and where they are


def stage_day(config: PipelineConfig, storage: Storage, day: dt.date) -> dict:
    """Read, check and type the day's delivery, and stage it for the audit."""
    return stage(config, storage, day).result


def stage(config: PipelineConfig, storage: Storage, day: dt.date) -> Staged:
    """`stage_day`, keeping what it read."""
    ds, v = config.dataset, config.validation
    delivery = _read(config, storage, day)
    contract = contracts.require(config, storage, resolution_sample(config, storage, delivery))
    schema = contract.schema
    name = ds.name

    def reject(stage: str, reasons: list[str], rows=None, **extra) -> IngestError:
        where = quarantine.keep_delivery(storage, delivery, name, stage, reasons, rows=rows, **extra)
        mark_rejected(config, storage, day, delivery.delivery_id, where, reasons)
        from pipeline.ops import metrics

        metrics.incr("deliveries_quarantined", 1, dataset=name, stage=stage)
        metrics.incr("rows_quarantined", delivery.num_rows, dataset=name)
        return IngestError(
            f"{name} delivery {delivery.delivery_id} for {day} rejected: {'; '.join(reasons)}. "
            f"Delivery kept in {where}; the committed partition "
            f"{storage.uri(layout.raw_partition(name, day))} is unchanged.",
            links={"quarantine": where},
        )

    problems = header_problems(contract, delivery.columns, ds.source.csv_delimiter, v.extra_columns)
    if problems:
        raise reject("contract", problems)
    if config.privacy.check_undeclared:
        declared = {schema.id_column, schema.target_column, *ds.pii_columns}
        undeclared = [c for c in delivery.columns if c not in declared and c != "_line"]
        held = delivery.table if delivery.table is not None else delivery.text
        problems = privacy.find_undeclared_pii(held, undeclared, config.privacy.min_share)
        if problems:
            raise reject("privacy", problems)
    extra = [c for c in delivery.columns if c not in contract.source_columns]
    if extra:
        log.warning("%s: dropping column(s) %s that contract v%d does not know", day, extra, contract.version)
    rows = type_delivery(delivery, schema, schema.target_column)
    delivered = delivery.num_rows
    bad_share = len(rows.bad) / delivered
    if len(rows.bad):
        limit = v.max_bad_row_share if v.row_policy == "quarantine_rows" else 0.0
        if bad_share > limit:
            raise reject(
                "typing",
                rows.problems
                + [
                    f"{len(rows.bad)} of {delivered} rows ({bad_share:.2%}) do not fit contract v{contract.version}; "
                    f"limit {limit:.2%} (validation.row_policy: {v.row_policy})"
                ],
                rows_bad=len(rows.bad),
            )
    good = rows.typed.drop(index=rows.bad.index)
    quarantined_rows = None
    if len(rows.bad):
        bad_text = delivery.text.loc[rows.bad.index].assign(_reason=rows.bad)
        quarantined_rows = quarantine.keep_delivery(
            storage,
            delivery,
            name,
            "typing",
            rows.problems,
            rows=bad_text,
            partial=True,
            rows_bad=len(rows.bad),
            rows_published=len(good),
        )
        log.warning(
            "%s: %d of %d rows (%.2f%%) quarantined at %s: %s",
            day,
            len(rows.bad),
            delivered,
            100 * bad_share,
            quarantined_rows,
            "; ".join(rows.problems),
        )
    if rows.duplicates_dropped:
        log.info("%s: %d exact duplicate row(s) dropped", day, rows.duplicates_dropped)
    features = _sorted_by_id(good.loc[:, list(schema.batch_columns)], schema.id_column)
    key = layout.staging_delivery(name, day, delivery.delivery_id)
    storage.write_partition(
        key,
        {"part-00000.parquet": _table(features)},
        manifest={
            "dataset": name,
            "day": day.isoformat(),
            "delivery_id": delivery.delivery_id,
            "source": ds.source.uri,
            "source_files": delivery.files,
            "source_sha256": delivery.digest,
            "schema": schema.to_dict(),
            "contract": contract.summary(),
            "rows_delivered": delivered,
            "duplicates_dropped": rows.duplicates_dropped,
            "rows_quarantined": len(rows.bad),
            "quarantined_rows": quarantined_rows,
        },
    )
    log.info("%s: staged %d of %d delivered rows (delivery %s)", day, len(features), delivered, delivery.delivery_id)
    from pipeline.ops import metrics

    metrics.incr("rows_ingested", len(features), dataset=name)
    metrics.incr("rows_quarantined", len(rows.bad), dataset=name)
    metrics.incr("duplicate_rows_dropped", rows.duplicates_dropped, dataset=name)
    result = {
        "day": day.isoformat(),
        "delivery_id": delivery.delivery_id,
        "staged": storage.uri(key),
        "rows": int(len(features)),
        "rows_delivered": delivered,
        "duplicates_dropped": rows.duplicates_dropped,
        "rows_quarantined": len(rows.bad),
        "contract_version": contract.version,
    }
    return Staged(result, delivery, rows, (set(features[schema.id_column].tolist()), storage.uri(key)))


ingest_day = stage_day


def publish_batch(
    config: PipelineConfig, storage: Storage, day: dt.date, typed, schema, source: str, extra: dict | None = None
) -> dict:
    """Stage an already-typed batch (simulated deliveries) for the audit, like stage_day."""
    import hashlib
    import uuid

    ds = config.dataset
    delivery_id = f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S%f}-{hashlib.sha256(uuid.uuid4().bytes).hexdigest()[:8]}"
    contract = contracts.require(config, storage)
    typed = _sorted_by_id(typed.loc[:, list(schema.batch_columns)], schema.id_column)
    key = layout.staging_delivery(ds.name, day, delivery_id)
    storage.write_partition(
        key,
        {"part-00000.parquet": _table(typed)},
        manifest={
            "dataset": ds.name,
            "day": day.isoformat(),
            "delivery_id": delivery_id,
            "source": source,
            "schema": schema.to_dict(),
            "contract": contract.summary(),
            "rows_delivered": int(len(typed)),
            **(extra or {}),
        },
    )
    log.info("staged %s rows for %s (delivery %s)", len(typed), day, delivery_id)
    return {"day": day.isoformat(), "delivery_id": delivery_id, "staged": storage.uri(key), "rows": int(len(typed))}


class LabelsWaitForBatch(LabelsNotAvailable):
    """The labels' day has no delivered batch yet: labels are published only with the rows they label."""


def publish_labels(
    config: PipelineConfig, storage: Storage, day: dt.date, typed, schema, as_of: dt.date, extra: dict | None = None
) -> dict:
    """Publish the labels of `day` (id + target), known as of `as_of`."""
    ds = config.dataset
    if day > as_of:  # a label of a later day is the future as seen from this run: never published
        raise LabelsNotAvailable(f"labels of {day} cannot be published as of {as_of} (a later day)")
    typed = _sorted_by_id(typed.loc[:, [schema.id_column, schema.target_column]], schema.id_column)
    key = layout.labels_partition(ds.name, day)
    storage.write_partition(
        key,
        {"part-00000.parquet": _table(typed)},
        manifest={"dataset": ds.name, "day": day.isoformat(), "known_as_of": as_of.isoformat(), **(extra or {})},
    )
    return {"day": day.isoformat(), "partition": storage.uri(key), "rows": int(len(typed))}


def delivered_ids(config: PipelineConfig, storage: Storage, day: dt.date, id_column: str) -> tuple[set, str] | None:
    """Ids of the day's batch: the committed raw partition, else the latest staged delivery
    (training stages a window before it validates it); None when the day has neither."""
    name = config.dataset.name
    candidates = [layout.raw_partition(name, day)]
    staged = sorted(storage.list_children(layout.staging_day(name, day)))
    candidates += [layout.staging_delivery(name, day, d) for d in reversed(staged)]
    for key in candidates:
        if storage.partition_exists(key):
            ids = storage.read_partition(key).column(id_column).to_pylist()
            return set(ids), storage.uri(key)
    return None


def label_problems(config: PipelineConfig, contract, rows, ids: tuple[set, str] | None) -> list[str]:
    """The label contract: classes, one label per id, ids that were delivered. Values are never
    quoted (ids may be personal), only counts and line numbers."""
    schema = contract.schema
    target, id_col = schema.target_column, schema.id_column
    typed = rows.typed
    problems = []
    classes = list(contract.target_classes) or None
    present = typed[target].notna() & (typed[target] != "None")
    if classes:
        outside = present & ~typed[target].isin(classes)
        if outside.any():
            problems.append(
                f"target column {target!r}: {int(outside.sum())} label(s) outside the contract's "
                f"classes {classes} (lines {[_plain(i) for i in typed.index[outside][:5]]})"
            )
    per_id = typed.loc[present].groupby(id_col, dropna=True)[target].nunique()
    conflicting = per_id[per_id > 1]
    if len(conflicting):
        problems.append(f"{len(conflicting)} id(s) carry more than one label; one label per id")
    if ids is not None:
        known, where = ids
        labelled = typed.loc[present, id_col].dropna()
        unknown = int((~labelled.isin(known)).sum())
        share = unknown / max(len(labelled), 1)
        limit = config.validation.max_unknown_label_share
        if unknown and share > limit:
            problems.append(
                f"{unknown} of {len(labelled)} label(s) ({share:.2%}) are for ids the day's batch "
                f"{where} does not have; limit {limit:.2%} (validation.max_unknown_label_share)"
            )
    return problems


def _plain(value):
    return value.item() if hasattr(value, "item") else value


def ingest_labels(
    config: PipelineConfig, storage: Storage, day: dt.date, as_of: dt.date, staged: Staged | None = None
) -> dict:
    """Audit the labels of `day`, known as of `as_of`, against the label contract and publish
    them; labels that break it go to quarantine and the committed labels stay. Rows whose
    features did not fit the contract are left out (their features were quarantined). `staged`:
    the day's delivery as staging just read and typed it (not read again)."""
    ds = config.dataset
    due = day + dt.timedelta(days=ds.batching.label_delay_days)
    if due > as_of or day > as_of:
        raise LabelsNotAvailable(f"labels of {day} arrive on {due}, after {as_of}")
    delivery = staged.delivery if staged else _read(config, storage, day)
    contract = contracts.require(config, storage, resolution_sample(config, storage, delivery))
    schema = contract.schema
    if schema.target_column not in delivery.columns:
        raise IngestError(
            f"{day}: the delivery ({', '.join(delivery.files)}) has no target column {schema.target_column!r}"
        )
    rows = staged.rows if staged else type_delivery(delivery, schema, schema.target_column)
    typed = rows.typed.drop(index=rows.bad.index)
    missing = typed[schema.target_column].isna() | (typed[schema.target_column] == "None")
    problems = []
    if missing.any():
        problems.append(
            f"{int(missing.sum())} row(s) have no value in target column {schema.target_column!r} "
            f"({delivery.row_label}s {[_plain(i) for i in typed.index[missing][:5]]})"
        )
    ids = staged.ids if staged else delivered_ids(config, storage, day, schema.id_column)
    problems += label_problems(config, contract, rows, ids)
    if ids is None and not problems:
        raise LabelsWaitForBatch(
            f"labels of {day} wait for the day's batch: no raw or staged delivery of {day} "
            "to check their ids against (they are published when the day is ingested)"
        )
    if problems:
        where = quarantine.keep_delivery(storage, delivery, ds.name, "labels", problems)
        from pipeline.ops import metrics

        metrics.incr("deliveries_quarantined", 1, dataset=ds.name, stage="labels")
        raise LabelsRejected(
            f"{ds.name} labels of {day} (delivery {delivery.delivery_id}) rejected: "
            f"{'; '.join(problems)}. Delivery kept in {where}; the committed labels "
            f"{storage.uri(layout.labels_partition(ds.name, day))} are unchanged.",
            links={"quarantine": where},
        )
    return publish_labels(config, storage, day, typed, schema, as_of)
