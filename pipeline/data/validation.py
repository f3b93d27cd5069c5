"""Great Expectations validation of a staged delivery: the *audit* of write-audit-publish.

The expectation suite is built from the dataset's frozen data contract
(:mod:`pipeline.data.contract`: columns, types, null tolerances, ranges and category
sets with their ``mostly`` shares, row count, unique ids), so another dataset gets its
own suite by config only, and no batch can change it. It lives in the file Data Context
in ``great_expectations/`` with a validation definition and a checkpoint.

A delivery that passes is published as the day's raw partition (replacing the earlier
one atomically); one that fails goes to ``quarantine/<dataset>/dt=…/<delivery>/`` with
its verdict and the committed partition stays as it was. :class:`ValidationFailed`
names the failed expectations with shares and limits, and links the failing page of
the Data Docs. Results keep no values of id, PII or sensitive columns.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.core import layout
from pipeline.core.errors import (
    PartitionNotFound,
    ValidationFailed,
)
from pipeline.core.settings import PipelineConfig
from pipeline.core.storage import Storage
from pipeline.data.data_docs import data_docs_index, docs_page, open_on_failures, prune_results, use_vendored_assets
from pipeline.data.expectations import context_lock, ensure_context, quiet_gx, suite_name

log = logging.getLogger(__name__)


@dataclass
class ValidationOutcome:
    success: bool
    failed: list[dict[str, Any]] = field(default_factory=list)
    evaluated: int = 0
    result: dict[str, Any] = field(default_factory=dict)
    docs_page: str | None = None
    # Passing expectations that found unexpected values within their `mostly` tolerance.
    tolerated: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> str:
        return "; ".join(_describe(f) for f in self.failed)


def _describe(failure: dict[str, Any]) -> str:
    text = failure["expectation"]
    if failure.get("column"):
        text += f"(column={failure['column']})"
    count, total = failure.get("unexpected_count"), failure.get("element_count")
    if count is not None:
        share = failure.get("unexpected_percent")
        text += f": {count} of {total} value(s) unexpected" if total else f": {count} unexpected"
        if share is not None:
            allowed = 100.0 * (1.0 - (failure.get("mostly") or 1.0))
            text += f" ({share:.2f}%; limit {allowed:.2f}%)"
    if failure.get("observed_value") is not None:
        text += f": observed {failure['observed_value']}"
        if failure.get("limits"):
            text += f", allowed {failure['limits']}"
    if failure.get("exception"):
        text += f": {failure['exception']}"
    return text


def _for_gx(frame: pd.DataFrame) -> pd.DataFrame:
    """GE 1.x compares pandas dtypes by identity and does not know pandas 3's
    default ``str`` dtype; as ``object`` columns it checks each value's Python type."""
    out = frame.copy()
    for col in out.columns:
        dtype = out[col].dtype
        if isinstance(dtype, (pd.StringDtype, pd.Int64Dtype)) or dtype == np.dtype(object):
            values = out[col].astype(object)
            out[col] = values.where(values.notna(), None)
    return out


_SAMPLE_KEYS = (
    "partial_unexpected_list",
    "partial_unexpected_counts",
    "partial_unexpected_index_list",
    "unexpected_list",
    "unexpected_index_list",
    "unexpected_index_query",
    "unexpected_rows",
)


def scrub(vr, protected: tuple[str, ...]) -> None:
    """Remove sampled values of protected columns (id, PII, sensitive) from a validation result;
    counts and shares stay."""
    for r in vr.results:
        column = r.expectation_config.kwargs.get("column")
        if column in protected and r.result:
            for key in _SAMPLE_KEYS:
                r.result.pop(key, None)
            if "details" in r.result:
                r.result.pop("details", None)


def _outcome(vr) -> ValidationOutcome:
    failed, tolerated, evaluated = [], [], 0
    for r in vr.results:
        evaluated += 1
        if r.success:
            res = r.result or {}
            if res.get("unexpected_count"):
                conf = r.expectation_config
                tolerated.append(
                    {
                        "expectation": conf.type,
                        "column": conf.kwargs.get("column"),
                        "unexpected_count": res["unexpected_count"],
                        "unexpected_percent": res.get("unexpected_percent"),
                        "element_count": res.get("element_count"),
                        "mostly": conf.kwargs.get("mostly"),
                    }
                )
            continue
        conf = r.expectation_config
        res = r.result or {}
        exc = r.exception_info if isinstance(r.exception_info, dict) else {}
        kwargs = conf.kwargs
        limits = None
        if "min_value" in kwargs or "max_value" in kwargs:
            limits = [kwargs.get("min_value"), kwargs.get("max_value")]
        failed.append(
            {
                "expectation": conf.type,
                "column": kwargs.get("column"),
                "unexpected_count": res.get("unexpected_count"),
                "unexpected_percent": res.get("unexpected_percent"),
                "element_count": res.get("element_count"),
                "mostly": kwargs.get("mostly"),
                "limits": limits if "unexpected_count" not in res else None,
                "observed_value": res.get("observed_value") if "unexpected_count" not in res else None,
                "exception": exc.get("exception_message") if exc.get("raised_exception") else None,
            }
        )
    return ValidationOutcome(
        success=bool(vr.success), failed=failed, evaluated=evaluated, result=vr.to_json_dict(), tolerated=tolerated
    )


def run_validation(config: PipelineConfig, contract, frames: dict[str, pd.DataFrame]) -> dict[str, ValidationOutcome]:
    """Validate batches (run name -> frame) with the checkpoint; store each result without
    protected values and update Data Docs for it (not the whole site)."""
    quiet_gx()  # before the first import of GE: its modules log at INFO while they load
    from great_expectations.core.run_identifier import RunIdentifier

    root = Path(config.validation.gx_root)
    outcomes = {}
    with context_lock(root):
        context, checkpoint = ensure_context(config, contract)
        keys = {}
        for run_name, frame in frames.items():
            result = checkpoint.run(
                batch_parameters={"dataframe": _for_gx(frame)}, run_id=RunIdentifier(run_name=run_name)
            )
            ((key, vr),) = result.run_results.items()
            scrub(vr, contract.protected)
            context.validation_results_store.set(key, vr)
            keys[run_name] = key
            outcomes[run_name] = _outcome(vr)
        # One Data Docs build for the whole batch of days (the site index is rebuilt once, not per day).
        if keys:
            context.build_data_docs(resource_identifiers=list(keys.values()))
        for run_name, key in keys.items():
            outcomes[run_name].docs_page = docs_page(context, key)
        use_vendored_assets(root, asset=f"{config.dataset.name}_raw")
        for outcome in outcomes.values():
            if not outcome.success:
                open_on_failures(outcome.docs_page)
        prune_results(root)
    return outcomes


# Data Docs load these from CDNs; offline the index list, the styling, the status icons and the
# charts are gone. The pages are rewritten to vendored copies (great_expectations/plugins/
# custom_data_docs/vendor/, from the npm registry; see its README). Quoted, so that a URL that is a
# prefix of another (vega@5, vega-lite@5) is replaced only whole.
# --------------------------------------------------------------------------- write-audit-publish


def staged_deliveries(storage: Storage, dataset: str, day: dt.date) -> list[str]:
    """Delivery ids staged for `day` and not yet judged, oldest first."""
    return sorted(storage.list_children(layout.staging_day(dataset, day)))


def _judge(
    config: PipelineConfig,
    storage: Storage,
    contract,
    day: dt.date,
    delivery_id: str,
    outcome: ValidationOutcome,
    frame: pd.DataFrame,
) -> tuple[dict | None, dict | None]:
    ds = config.dataset
    staged = layout.staging_delivery(ds.name, day, delivery_id)
    raw_key = layout.raw_partition(ds.name, day)
    staged_manifest = storage.read_manifest(staged)
    docs = getattr(outcome, "docs_page", None) or data_docs_index(config)
    record = {
        "dataset": ds.name,
        "day": day.isoformat(),
        "delivery_id": delivery_id,
        "success": outcome.success,
        "rows": int(len(frame)),
        "expectations_evaluated": outcome.evaluated,
        "failed_expectations": outcome.failed,
        "tolerated": outcome.tolerated,
        "suite": suite_name(config),
        "contract": contract.summary(),
        "data_docs": docs,
        "validated_at": dt.datetime.now(dt.UTC).isoformat(),
    }
    if outcome.success:
        keep = {k: v for k, v in staged_manifest.items() if k not in ("files", "file_map", "publish_id", "row_count")}
        published = storage.copy_partition(
            staged,
            raw_key,
            manifest={**keep, "validation": {"expectations_evaluated": outcome.evaluated, "data_docs": docs}},
        )
        record["raw_publish_id"] = published["publish_id"]
        storage.write_json(layout.validation_record(ds.name, day), record)
        storage.delete(staged)
        from pipeline.ops import metrics

        metrics.incr("validations_passed", 1, dataset=ds.name)
        log.info(
            "%s: delivery %s passed %d expectations on %d rows; published at %s",
            day,
            delivery_id,
            outcome.evaluated,
            len(frame),
            storage.uri(raw_key),
        )
        for t in outcome.tolerated:
            log.warning("%s: tolerated %s", day, _describe(t))
        return {
            k: record[k] for k in ("day", "delivery_id", "success", "rows", "expectations_evaluated", "tolerated")
        } | {"partition": storage.uri(raw_key), "data_docs": docs}, None
    from pipeline.data import quarantine

    q_uri = quarantine.from_staging(
        storage,
        staged,
        ds.name,
        day,
        delivery_id,
        stage="validate",
        reasons=[_describe(f) for f in outcome.failed],
        details={"summary": record, "great_expectations": outcome.result},
    )
    storage.delete(staged)
    record["quarantine"] = q_uri
    from pipeline.ops import metrics

    metrics.incr("validation_failures", 1, dataset=ds.name)
    metrics.incr("deliveries_quarantined", 1, dataset=ds.name, stage="validate")
    metrics.incr("rows_quarantined", len(frame), dataset=ds.name)
    committed = storage.partition_exists(raw_key)
    if not committed:  # nothing good for that day: training and monitoring must see it as quarantined
        storage.write_json(layout.validation_record(ds.name, day), record)
    message = (
        f"{ds.name} delivery {delivery_id} for {day} failed {len(outcome.failed)} of {outcome.evaluated} "
        f"expectations of contract v{contract.version}: {outcome.summary()}. Delivery kept in {q_uri}; "
        + (f"the committed partition {storage.uri(raw_key)} is unchanged; " if committed else "")
        + f"failing validation page: {docs}"
    )
    log.error(message)
    return None, {"message": message, "links": {"failing validation page": docs, "quarantine": q_uri}}


def validate_days(
    config: PipelineConfig, storage: Storage, days: list[dt.date], deliveries: dict[dt.date, str] | None = None
) -> tuple[list[dict], list[dict]]:
    """Audit the staged delivery of each day (the given one, or the latest) and publish it or
    quarantine it. Returns (records of published days, messages of failed days)."""
    from pipeline.data import contract as contracts

    ds = config.dataset
    contract = contracts.require(config, storage)
    frames, chosen = {}, {}
    for day in days:
        delivery_id = (deliveries or {}).get(day)
        if delivery_id is None:
            staged = staged_deliveries(storage, ds.name, day)
            if not staged:
                raise ValidationFailed(
                    f"{day}: no staged delivery to validate under "
                    f"{storage.uri(layout.staging_day(ds.name, day))} (run ingestion first: "
                    f"python -m pipeline ingest --date {day})"
                )
            delivery_id = staged[-1]
            for older in staged[:-1]:  # superseded by a later delivery of the same day
                storage.delete(layout.staging_delivery(ds.name, day, older))
        key = layout.staging_delivery(ds.name, day, delivery_id)
        try:
            frames[f"{ds.name}-{day.isoformat()}-{delivery_id}"] = storage.read_partition(key).to_pandas()
        except PartitionNotFound as exc:
            raise ValidationFailed(f"{day}: delivery {delivery_id} is not staged ({exc}); run ingestion again") from exc
        chosen[day] = delivery_id
    if not frames:
        return [], []
    outcomes = run_validation(config, contract, frames)
    passed, failures = [], []
    for day, delivery_id in chosen.items():
        name = f"{ds.name}-{day.isoformat()}-{delivery_id}"
        ok, failure = _judge(config, storage, contract, day, delivery_id, outcomes[name], frames[name])
        if ok:
            passed.append(ok)
        elif failure is not None:
            failures.append(failure)
    return passed, failures


def validate_day(config: PipelineConfig, storage: Storage, day: dt.date, delivery_id: str | None = None) -> dict:
    """Audit the day's staged delivery; publish it, or quarantine it and raise."""
    passed, failures = validate_days(config, storage, [day], {day: delivery_id} if delivery_id else None)
    if failures:
        raise ValidationFailed(failures[0]["message"], links=failures[0]["links"])
    return passed[0]


def require_validated(config: PipelineConfig, storage: Storage, day: dt.date) -> dict:
    """The raw partition's manifest, provided it passed validation as published now."""
    ds = config.dataset
    raw_key = layout.raw_partition(ds.name, day)
    try:
        manifest = storage.read_manifest(raw_key)
    except PartitionNotFound as exc:
        raise PartitionNotFound(
            f"{exc}: day {day} was not ingested and validated; run "
            f"`python -m pipeline run-scoring --date {day}` (ingest, validate, score)"
        ) from exc
    try:
        record = storage.read_json(layout.validation_record(ds.name, day))
    except FileNotFoundError as exc:
        raise ValidationFailed(f"{day}: raw partition was never validated") from exc
    if not record.get("success") or record.get("raw_publish_id") != manifest["publish_id"]:
        raise ValidationFailed(f"{day}: raw partition changed since it was validated, or failed; validate it again")
    return manifest
