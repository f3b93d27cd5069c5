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

import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import re
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
from pipeline.data.source import Schema

log = logging.getLogger(__name__)

DATA_SOURCE = "pipeline_pandas"
BATCH_DEFINITION = "whole_batch"

NUMERIC_TYPES = ["float64", "Float64", "float32", "int64", "Int64", "int32", "Int32"]
TEXT_TYPES = ["str"]
ID_TYPES = ["int", "int64", "str"]
# The finite range of float64: a number column's values lie within it (no ±inf, by contract).
FLOAT_MAX = float(np.finfo(np.float64).max)


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


def suite_name(config: PipelineConfig) -> str:
    return f"{config.dataset.name}_raw_batch"


def checkpoint_name(config: PipelineConfig) -> str:
    return f"{config.dataset.name}_raw_batch_checkpoint"


def build_expectations(contract) -> list:
    """The suite's expectations, from the data contract (never from a batch)."""
    _quiet_gx()
    import great_expectations.expectations as gxe

    schema: Schema = contract.schema
    v = contract.validation
    exps: list = [gxe.ExpectTableRowCountToBeBetween(min_value=v["min_rows"], max_value=contract.max_rows)]
    for col in schema.batch_columns:
        exps.append(gxe.ExpectColumnToExist(column=col))
    exps += [
        gxe.ExpectColumnValuesToNotBeNull(column=schema.id_column),
        gxe.ExpectColumnValuesToBeUnique(column=schema.id_column),
        gxe.ExpectColumnValuesToBeInTypeList(column=schema.id_column, type_list=ID_TYPES),
    ]

    def _checks(col: str) -> None:
        if col in v["ranges"]:
            lo, hi = v["ranges"][col]
            # An open bound still excludes ±inf: every number column is finite by contract.
            exps.append(
                gxe.ExpectColumnValuesToBeBetween(
                    column=col,
                    min_value=-FLOAT_MAX if lo is None else lo,
                    max_value=FLOAT_MAX if hi is None else hi,
                    mostly=contract.mostly(col, "range"),
                )
            )
        elif col in schema.numeric:
            exps.append(
                gxe.ExpectColumnValuesToBeBetween(
                    column=col, min_value=-FLOAT_MAX, max_value=FLOAT_MAX, meta={"contract": "finite numbers"}
                )
            )
        if col in v["categories"]:
            exps.append(
                gxe.ExpectColumnValuesToBeInSet(
                    column=col, value_set=list(v["categories"][col]), mostly=contract.mostly(col, "in_set")
                )
            )

    for col in schema.numeric:
        exps.append(gxe.ExpectColumnValuesToBeInTypeList(column=col, type_list=NUMERIC_TYPES))
        exps.append(gxe.ExpectColumnValuesToNotBeNull(column=col, mostly=contract.mostly(col, "not_null")))
        _checks(col)
    for col in schema.categorical:
        exps.append(gxe.ExpectColumnValuesToBeInTypeList(column=col, type_list=TEXT_TYPES))
        exps.append(gxe.ExpectColumnValuesToNotBeNull(column=col, mostly=contract.mostly(col, "not_null")))
        _checks(col)
    for col in schema.sensitive:  # not features, but the fairness checks read them
        if col in v["mostly"] and "not_null" in v["mostly"][col]:
            exps.append(gxe.ExpectColumnValuesToNotBeNull(column=col, mostly=contract.mostly(col, "not_null")))
        _checks(col)
    return exps


def _signature(expectations) -> list[str]:
    sig = []
    for e in expectations:
        conf = e.configuration.to_json_dict()
        sig.append(json.dumps({"type": conf["type"], "kwargs": conf["kwargs"]}, sort_keys=True))
    return sorted(sig)


@contextlib.contextmanager
def _context_lock(root: Path):
    # Several tasks may validate at once on one worker; GE's file stores are not
    # safe against concurrent writers.
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".pipeline.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _quiet_gx() -> None:
    """GE's loggers at WARNING, so task logs carry the pipeline's lines (its modules log at INFO
    while they load: ~200 lines of "Skipping registering function ..." per validate task)."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    for name in [
        "great_expectations",
        *(n for n in logging.root.manager.loggerDict if n.startswith("great_expectations.")),
    ]:
        logging.getLogger(name).setLevel(logging.WARNING)


def ensure_context(config: PipelineConfig, contract):
    """Open the file Data Context and make its suite/definition/checkpoint match the contract.

    The suite is rewritten only when it differs from the contract's, which changes only
    through `contract update`: a batch can never change it."""
    _quiet_gx()
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.exceptions import DataContextError

    import great_expectations as gx

    root = Path(config.validation.gx_root)
    context = gx.get_context(mode="file", context_root_dir=str(root))
    context.variables.progress_bars = ProgressBarsConfig(globally=False)

    try:
        source = context.data_sources.get(DATA_SOURCE)
    except KeyError:
        source = context.data_sources.add_pandas(DATA_SOURCE)
    asset_name = f"{config.dataset.name}_raw"
    try:
        asset = source.get_asset(asset_name)
    except LookupError:
        asset = source.add_dataframe_asset(asset_name)
    try:
        batch_definition = asset.get_batch_definition(BATCH_DEFINITION)
    except KeyError:
        batch_definition = asset.add_batch_definition_whole_dataframe(BATCH_DEFINITION)

    wanted = build_expectations(contract)
    name = suite_name(config)
    vd_name = f"{name}_definition"
    try:
        suite = context.suites.get(name)
        changed = _signature(suite.expectations) != _signature(wanted)
    except DataContextError:  # not stored yet
        suite, changed = None, True
    if changed:
        # The config changed (or first run): replace the suite and what refers to it.
        for store, item in (
            (context.checkpoints, checkpoint_name(config)),
            (context.validation_definitions, vd_name),
            (context.suites, name),
        ):
            with contextlib.suppress(DataContextError):
                store.delete(item)
        suite = context.suites.add(
            gx.ExpectationSuite(
                name=name,
                expectations=wanted,
                meta={
                    "data_contract": f"{contract.dataset} v{contract.version}",
                    "note": "generated from the data contract; change it with `python -m pipeline contract update`",
                },
            )
        )
    try:
        checkpoint = context.checkpoints.get(checkpoint_name(config))
    except DataContextError:
        try:
            definition = context.validation_definitions.get(vd_name)
        except DataContextError:
            definition = context.validation_definitions.add(
                gx.ValidationDefinition(name=vd_name, data=batch_definition, suite=suite)
            )
        checkpoint = context.checkpoints.add(
            gx.Checkpoint(
                name=checkpoint_name(config),
                validation_definitions=[definition],
                # Data Docs are updated per validation, after the result is scrubbed of
                # protected values (run_validation), not rebuilt by an action.
                actions=[],
                result_format={"result_format": "SUMMARY"},
            )
        )
    return context, checkpoint


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


KEEP_GX_RESULTS = 200


def _prune_results(root: Path, keep: int = KEEP_GX_RESULTS) -> None:
    """Keep GE's own result store bounded; the pipeline's verdicts live in storage."""
    store = root / "uncommitted" / "validations"
    files = sorted((p for p in store.rglob("*.json")), key=lambda p: p.stat().st_mtime)
    for path in files[:-keep] if len(files) > keep else []:
        path.unlink(missing_ok=True)


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
    _quiet_gx()  # before the first import of GE: its modules log at INFO while they load
    from great_expectations.core.run_identifier import RunIdentifier

    root = Path(config.validation.gx_root)
    outcomes = {}
    with _context_lock(root):
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
            outcomes[run_name].docs_page = _docs_page(context, key)
        use_vendored_assets(root, asset=f"{config.dataset.name}_raw")
        for outcome in outcomes.values():
            if not outcome.success:
                open_on_failures(outcome.docs_page)
        _prune_results(root)
    return outcomes


# Data Docs load these from CDNs; offline the index list, the styling, the status icons and the
# charts are gone. The pages are rewritten to vendored copies (great_expectations/plugins/
# custom_data_docs/vendor/, from the npm registry; see its README). Quoted, so that a URL that is a
# prefix of another (vega@5, vega-lite@5) is replaced only whole.
_VENDORED = {
    "https://code.jquery.com/jquery-3.7.1.min.js": "jquery.min.js",
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css": "bootstrap.min.css",
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js": "bootstrap.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js": "popper.min.js",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css": "bootstrap-table.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js": "bootstrap-table.min.js",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/bootstrap-table-filter-control.min.js": "bootstrap-table-filter-control.min.js",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.min.css": "bootstrap-table-filter-control.min.css",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.css": "bootstrap-table-filter-control.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/bootstrap-datepicker.min.css": "bootstrap-datepicker.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/bootstrap-datepicker.min.js": "bootstrap-datepicker.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css": "fontawesome/css/all.min.css",
    "https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/bootstrap-prefers-dark.css": "bootstrap-prefers-dark.min.css",
    "https://cdn.jsdelivr.net/npm/vega@5": "vega.min.js",
    "https://cdn.jsdelivr.net/npm/vega-lite@5": "vega-lite.min.js",
    "https://cdn.jsdelivr.net/npm/vega-embed@6": "vega-embed.min.js",
}
# GE's logo comes from its web-assets bucket (with a tracking query); the site has its own copy.
_REMOTE_LOGO = re.compile(r"https://great-expectations-web-assets\.s3[^\"']*/(logo-long\.png)[^\"']*")
# GE writes the favicon's path one level short on validation pages: point every image at the site's.
_SITE_IMAGE = re.compile(r"([\"'])(?:\.\./)*static/images/")
# The CDN tags carry SRI hashes and crossorigin: a file:// page refuses crossorigin loads, and the
# local copies are checked by their own origin instead.
_SRI = re.compile(r"\s+(?:integrity=\"[^\"]*\"|crossorigin=\"anonymous\")")
# A failing validation's page opens on the failed expectations (the page's own "Failed Only").
_FAILED_ONLY = (
    "<script>document.addEventListener('DOMContentLoaded',function(){"
    "var b=document.getElementById('option2');if(b){b.closest('label').click();}});</script>"
)
_PROJECT_VENDOR = Path(__file__).resolve().parents[2] / "great_expectations" / "plugins" / "custom_data_docs" / "vendor"


def _offline(text: str, relative_site: str, asset: str | None) -> str:
    vendor = f"{relative_site}/static/vendor"
    for url, name in _VENDORED.items():
        for quote in ('"', "'"):
            text = text.replace(f"{quote}{url}{quote}", f"{quote}{vendor}/{name}{quote}")
    text = _REMOTE_LOGO.sub(lambda m: f"{relative_site}/static/images/{m.group(1)}", text)
    text = _SITE_IMAGE.sub(lambda m: f"{m.group(1)}{relative_site}/static/images/", text)
    text = _SRI.sub("", text)
    if asset:
        text = text.replace("Data asset: None", f"Data asset: {asset}")
    return text


def use_vendored_assets(root: Path, asset: str | None = None) -> int:
    """Make the Data Docs pages work offline: vendored CDN assets, the local logo, the data asset
    named; returns the pages rewritten."""
    import shutil

    site = root / "uncommitted" / "data_docs" / "local_site"
    source = root / "plugins" / "custom_data_docs" / "vendor"
    source = source if source.is_dir() else _PROJECT_VENDOR
    if not site.is_dir() or not source.is_dir():
        return 0
    vendor = site / "static" / "vendor"
    if not (vendor / "vega.min.js").exists():
        shutil.copytree(source, vendor, dirs_exist_ok=True)
    rewritten = 0
    for page in site.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        relative = os.path.relpath(site, page.parent)
        new = _offline(text, relative, asset)
        if new != text:
            page.write_text(new, encoding="utf-8")
            rewritten += 1
    return rewritten


def open_on_failures(page: str | None) -> None:
    """Make a failing validation's page open on its failed expectations."""
    if not page or not Path(page).is_file():
        return
    path = Path(page)
    text = path.read_text(encoding="utf-8")
    if _FAILED_ONLY not in text and "</body>" in text:
        path.write_text(text.replace("</body>", _FAILED_ONLY + "</body>", 1), encoding="utf-8")


def _docs_page(context, key) -> str | None:
    try:
        sites = context.get_docs_sites_urls(resource_identifier=key)
    except Exception:  # a docs site without a page for this result: fall back to the index
        return None
    for site in sites or []:
        url = site.get("site_url")
        if url:
            return url.removeprefix("file://")
    return None


def write_suite(config: PipelineConfig, contract) -> None:
    """Make the committed suite match `contract` (called when a contract version is stored)."""
    root = Path(config.validation.gx_root)
    with _context_lock(root):
        ensure_context(config, contract)


def data_docs_index(config: PipelineConfig) -> str:
    return str(Path(config.validation.gx_root) / "uncommitted" / "data_docs" / "local_site" / "index.html")


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
