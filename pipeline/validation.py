"""Great Expectations validation of a raw daily batch.

The expectation suite is *built from the dataset config* (columns, types, nulls,
ranges, category sets, row count, unique ids), so another dataset gets its own
suite by config only. It lives in the file Data Context in ``great_expectations/``
together with a validation definition and a checkpoint that also builds Data
Docs. The context is updated only when the suite built from config differs from
the stored one, so committed suite files do not churn.

A failing batch is moved to ``quarantine/`` with the validation result, and
:class:`ValidationFailed` names the failed expectations.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from . import layout
from .errors import PipelineError
from .config import PipelineConfig
from .source import Schema
from .storage import PartitionNotFound, Storage

log = logging.getLogger(__name__)

DATA_SOURCE = "pipeline_pandas"
BATCH_DEFINITION = "whole_batch"

NUMERIC_TYPES = ["float64", "Float64", "float32", "int64", "Int64", "int32", "Int32"]
TEXT_TYPES = ["str"]
ID_TYPES = ["int", "int64", "str"]


class ValidationFailed(PipelineError, ValueError):
    """A batch broke its expectation suite; the message names the failed expectations."""


@dataclass
class ValidationOutcome:
    success: bool
    failed: list[dict[str, Any]] = field(default_factory=list)
    evaluated: int = 0
    result: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        return "; ".join(_describe(f) for f in self.failed)


def _describe(failure: dict[str, Any]) -> str:
    text = failure["expectation"]
    if failure.get("column"):
        text += f"(column={failure['column']})"
    if failure.get("unexpected_count") is not None:
        text += f": {failure['unexpected_count']} unexpected"
    if failure.get("observed_value") is not None:
        text += f": observed {failure['observed_value']}"
    return text


def suite_name(config: PipelineConfig) -> str:
    return f"{config.dataset.name}_raw_batch"


def checkpoint_name(config: PipelineConfig) -> str:
    return f"{config.dataset.name}_raw_batch_checkpoint"


def build_expectations(config: PipelineConfig, schema: Schema) -> list:
    """The suite's expectations, from the dataset config and resolved schema."""
    import great_expectations.expectations as gxe

    v = config.validation
    mostly = round(1.0 - v.max_null_fraction, 6)
    exps: list = [gxe.ExpectTableRowCountToBeBetween(min_value=v.min_rows, max_value=v.max_rows)]
    for col in schema.batch_columns:
        exps.append(gxe.ExpectColumnToExist(column=col))
    exps += [
        gxe.ExpectColumnValuesToNotBeNull(column=schema.id_column),
        gxe.ExpectColumnValuesToBeUnique(column=schema.id_column),
        gxe.ExpectColumnValuesToBeInTypeList(column=schema.id_column, type_list=ID_TYPES),
    ]
    for col in schema.numeric:
        exps.append(gxe.ExpectColumnValuesToBeInTypeList(column=col, type_list=NUMERIC_TYPES))
        exps.append(gxe.ExpectColumnValuesToNotBeNull(column=col, mostly=mostly))
        if col in v.ranges:
            lo, hi = v.ranges[col]
            exps.append(gxe.ExpectColumnValuesToBeBetween(column=col, min_value=lo, max_value=hi))
    for col in schema.categorical:
        exps.append(gxe.ExpectColumnValuesToBeInTypeList(column=col, type_list=TEXT_TYPES))
        exps.append(gxe.ExpectColumnValuesToNotBeNull(column=col, mostly=mostly))
        if col in v.categories:
            exps.append(gxe.ExpectColumnValuesToBeInSet(column=col, value_set=list(v.categories[col])))
    for col in schema.sensitive:  # not features, but the fairness checks read them
        if col in v.categories:
            exps.append(gxe.ExpectColumnValuesToBeInSet(column=col, value_set=list(v.categories[col])))
    unknown = sorted((set(v.ranges) | set(v.categories)) - set(schema.features) - set(schema.sensitive))
    if unknown:
        raise ValueError(f"validation.ranges/categories name column(s) that are not features: {unknown}")
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
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    for name in ("great_expectations", "great_expectations.core", "great_expectations.data_context"):
        logging.getLogger(name).setLevel(logging.WARNING)


def ensure_context(config: PipelineConfig, schema: Schema):
    """Open the file Data Context and make its suite/definition/checkpoint match the config."""
    _quiet_gx()
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.exceptions import DataContextError

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

    wanted = build_expectations(config, schema)
    name = suite_name(config)
    vd_name = f"{name}_definition"
    try:
        suite = context.suites.get(name)
        changed = _signature(suite.expectations) != _signature(wanted)
    except DataContextError:  # not stored yet
        suite, changed = None, True
    if changed:
        # The config changed (or first run): replace the suite and what refers to it.
        for store, item in ((context.checkpoints, checkpoint_name(config)),
                            (context.validation_definitions, vd_name), (context.suites, name)):
            with contextlib.suppress(DataContextError):
                store.delete(item)
        suite = context.suites.add(gx.ExpectationSuite(name=name, expectations=wanted))
    try:
        checkpoint = context.checkpoints.get(checkpoint_name(config))
    except DataContextError:
        try:
            definition = context.validation_definitions.get(vd_name)
        except DataContextError:
            definition = context.validation_definitions.add(
                gx.ValidationDefinition(name=vd_name, data=batch_definition, suite=suite))
        checkpoint = context.checkpoints.add(gx.Checkpoint(
            name=checkpoint_name(config),
            validation_definitions=[definition],
            # Data Docs are built once per batch of validated days (see validate_days),
            # not once per day: the site builder re-reads every stored result.
            actions=[],
            result_format={"result_format": "SUMMARY"},
        ))
    return context, checkpoint


def _for_gx(frame: pd.DataFrame) -> pd.DataFrame:
    """GE 1.x compares pandas dtypes by identity and does not know pandas 3's
    default ``str`` dtype; as ``object`` columns it checks each value's Python type."""
    out = frame.copy()
    for col in out.columns:
        dtype = out[col].dtype
        if isinstance(dtype, pd.StringDtype) or isinstance(dtype, pd.Int64Dtype) or dtype == object:
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


def _outcome(vr) -> ValidationOutcome:
    failed, evaluated = [], 0
    for r in vr.results:
        evaluated += 1
        if r.success:
            continue
        conf = r.expectation_config
        res = r.result or {}
        exc = r.exception_info if isinstance(r.exception_info, dict) else {}
        failed.append({
            "expectation": conf.type,
            "column": conf.kwargs.get("column"),
            "unexpected_count": res.get("unexpected_count"),
            "unexpected_percent": res.get("unexpected_percent"),
            "observed_value": res.get("observed_value") if "unexpected_count" not in res else None,
            "exception": exc.get("exception_message") if exc.get("raised_exception") else None,
        })
    return ValidationOutcome(success=bool(vr.success), failed=failed, evaluated=evaluated,
                             result=vr.to_json_dict())


def run_validation(config: PipelineConfig, schema: Schema, frames: dict[str, pd.DataFrame]) -> dict[str, ValidationOutcome]:
    """Validate batches (run name -> frame) with the checkpoint, then rebuild Data Docs once."""
    from great_expectations.core.run_identifier import RunIdentifier

    root = Path(config.validation.gx_root)
    outcomes = {}
    with _context_lock(root):
        context, checkpoint = ensure_context(config, schema)
        for run_name, frame in frames.items():
            result = checkpoint.run(batch_parameters={"dataframe": _for_gx(frame)},
                                    run_id=RunIdentifier(run_name=run_name))
            (vr,) = result.run_results.values()
            outcomes[run_name] = _outcome(vr)
        _prune_results(root)
        context.build_data_docs()
    return outcomes


def data_docs_index(config: PipelineConfig) -> str:
    return str(Path(config.validation.gx_root) / "uncommitted" / "data_docs" / "local_site" / "index.html")


def validate_days(config: PipelineConfig, storage: Storage, days: list[dt.date]) -> tuple[list[dict], list[str]]:
    """Validate raw partitions; record verdicts; quarantine failures.

    Returns (records of passed days, messages of failed days).
    """
    ds = config.dataset
    frames, manifests, schema = {}, {}, None
    for day in days:
        raw_key = layout.raw_partition(ds.name, day)
        try:
            manifests[day] = storage.read_manifest(raw_key)
        except PartitionNotFound as exc:
            raise ValidationFailed(f"{day}: nothing to validate, {exc} (run ingestion first)") from exc
        schema = Schema.from_dict(manifests[day]["schema"])
        frames[f"{ds.name}-{day.isoformat()}"] = storage.read_partition(raw_key).to_pandas()
    if not frames:
        return [], []
    outcomes = run_validation(config, schema, frames)
    passed, failures = [], []
    for day in days:
        name = f"{ds.name}-{day.isoformat()}"
        outcome, frame = outcomes[name], frames[name]
        record = {
            "dataset": ds.name,
            "day": day.isoformat(),
            "success": outcome.success,
            "raw_publish_id": manifests[day]["publish_id"],
            "rows": int(len(frame)),
            "expectations_evaluated": outcome.evaluated,
            "failed_expectations": outcome.failed,
            "suite": suite_name(config),
            "data_docs": data_docs_index(config),
            "validated_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        }
        if outcome.success:
            storage.write_json(layout.validation_record(ds.name, day), record)
            passed.append({k: record[k] for k in ("day", "success", "rows", "expectations_evaluated")})
            log.info("%s: %d expectations passed on %d rows", day, outcome.evaluated, len(frame))
            continue
        raw_key = layout.raw_partition(ds.name, day)
        q_key = layout.quarantine_partition(ds.name, day)
        result_bytes = json.dumps({"summary": record, "great_expectations": outcome.result},
                                  indent=2, sort_keys=True, default=str).encode()
        storage.copy_partition(raw_key, q_key, extra_files={"validation_result.json": result_bytes},
                               manifest={"reason": {"stage": "validate", "failed_expectations": outcome.failed}})
        storage.delete(raw_key)  # scoring and training must not pick it up
        record["quarantine"] = storage.uri(q_key)
        storage.write_json(layout.validation_record(ds.name, day), record)
        failures.append(
            f"{ds.name} batch {day} failed {len(outcome.failed)} of {outcome.evaluated} expectations: "
            f"{outcome.summary()}. Batch moved to {storage.uri(q_key)}; Data Docs: {record['data_docs']}")
        log.error(failures[-1])
    return passed, failures


def validate_day(config: PipelineConfig, storage: Storage, day: dt.date) -> dict:
    """Validate the day's raw partition; quarantine it and raise if it fails."""
    passed, failures = validate_days(config, storage, [day])
    if failures:
        raise ValidationFailed(failures[0])
    return {**passed[0], "data_docs": data_docs_index(config)}


def require_validated(config: PipelineConfig, storage: Storage, day: dt.date) -> dict:
    """The raw partition's manifest, provided it passed validation as published now."""
    ds = config.dataset
    raw_key = layout.raw_partition(ds.name, day)
    manifest = storage.read_manifest(raw_key)
    try:
        record = storage.read_json(layout.validation_record(ds.name, day))
    except FileNotFoundError as exc:
        raise ValidationFailed(f"{day}: raw partition was never validated") from exc
    if not record.get("success") or record.get("raw_publish_id") != manifest["publish_id"]:
        raise ValidationFailed(f"{day}: raw partition changed since it was validated, or failed; "
                               "validate it again")
    return manifest
