"""The Great Expectations suite of a dataset, built from its frozen data contract (never from a batch),
and the file Data Context that holds it with a validation definition and a checkpoint."""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
from pathlib import Path

import numpy as np

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


def suite_name(config: PipelineConfig) -> str:
    return f"{config.dataset.name}_raw_batch"


def checkpoint_name(config: PipelineConfig) -> str:
    return f"{config.dataset.name}_raw_batch_checkpoint"


def build_expectations(contract) -> list:
    """The suite's expectations, from the data contract (never from a batch)."""
    quiet_gx()
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
def context_lock(root: Path):
    # Several tasks may validate at once on one worker; GE's file stores are not
    # safe against concurrent writers.
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".pipeline.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def quiet_gx() -> None:
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
    quiet_gx()
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


def write_suite(config: PipelineConfig, contract) -> None:
    """Make the committed suite match `contract` (called when a contract version is stored)."""
    root = Path(config.validation.gx_root)
    with context_lock(root):
        ensure_context(config, contract)


def init_context(config: PipelineConfig, storage: Storage) -> dict:
    """Write the suite and checkpoint of the current data contract into the Data Context."""
    from pipeline.data import contract as contracts

    contract = contracts.require(config, storage)
    write_suite(config, contract)
    return {
        "gx_root": config.validation.gx_root,
        "suite": suite_name(config),
        "checkpoint": checkpoint_name(config),
        "contract": contract.summary(),
    }


def update_contract(
    config: PipelineConfig, storage: Storage, reason: str, from_day: dt.date | None, actor: str | None
) -> dict:
    """A new contract version from the params (and that day's column types), and the suite with it."""
    from pipeline.data import contract as contracts
    from pipeline.data.delivery import read_delivery, resolution_sample

    sample = resolution_sample(config, storage, read_delivery(config, storage, from_day)) if from_day else None
    result = contracts.update(config, storage, reason, sample, actor)
    if result["changed"]:  # the committed suite follows the contract at once (validation would re-sync it)
        write_suite(config, contracts.require(config, storage))
    return result
