"""What the params say of the dataset's columns, checked before anything is read (roles that must
not overlap, ordered ranges) and against the data when it is first read (every named column exists)."""

from __future__ import annotations

import difflib

from pipeline.core.errors import ConfigError
from pipeline.core.settings import PipelineConfig


def check_settings(config: PipelineConfig) -> list[str]:
    """What the data settings cannot say alone: roles of columns that must not overlap, ordered ranges."""
    ds, v = config.dataset, config.validation
    problems: list[str] = []
    if ds.id_column is not None:
        if ds.id_column == ds.target.column:
            problems.append(f"dataset.id_column {ds.id_column!r} is also the target column")
        if ds.id_column in ds.pii_columns:
            problems.append(
                f"dataset.id_column {ds.id_column!r} is listed in dataset.pii_columns: the id is kept in "
                "every output (predictions join on it), so it cannot be PII. Use a pseudonymous id, or set "
                "id_column: null to derive a row key"
            )
        if ds.id_column in ds.sensitive_attributes:
            problems.append(f"dataset.id_column {ds.id_column!r} is listed in dataset.sensitive_attributes")
    if ds.target.column in ds.pii_columns or ds.target.column in ds.features.exclude:
        problems.append(f"dataset.target.column {ds.target.column!r} is listed as PII or excluded")
    roles = {ds.id_column, ds.target.column, ds.event_time_column, *ds.pii_columns} - {None}
    for section in ("ranges", "categories", "mostly"):
        if clash := sorted(set(getattr(v, section)) & roles):
            problems.append(f"validation.{section} names id/target/event-time/PII column(s) {clash}")
    for col, (lo, hi) in v.ranges.items():
        if lo is not None and hi is not None and lo > hi:
            problems.append(
                f"validation.ranges.{col}: [{lo:g}, {hi:g}] is not ordered (minimum above maximum); "
                f"did you mean [{hi:g}, {lo:g}]?"
            )
    problems += [
        f"validation.categories.{c}: empty list (no value could pass)" for c, x in v.categories.items() if not x
    ]
    for col, checks in v.mostly.items():
        if unknown := sorted(set(checks) - {"range", "in_set", "not_null"}):
            problems.append(f"validation.mostly.{col}: unknown check(s) {unknown}; known: range, in_set, not_null")
    if ds.batching.label_delay_days < 0:
        problems.append(
            f"dataset.batching.label_delay_days is {ds.batching.label_delay_days}: labels cannot arrive "
            "before their day (a negative delay would train on labels from the future)"
        )
    if v.max_rows_factor <= 1.0 or (v.max_rows is not None and v.max_rows < v.min_rows):
        problems.append("validation.max_rows_factor must be > 1 and max_rows >= min_rows")
    if not ds.name.replace("_", "").replace("-", "").isalnum():
        problems.append(f"dataset.name {ds.name!r} must be letters, digits, '-' or '_' (it names storage paths)")
    special = {ds.id_column, ds.target.column, ds.event_time_column} - {None}
    if clash := sorted((set(ds.features.numeric) | set(ds.features.categorical)) & (special | set(ds.pii_columns))):
        problems.append(f"dataset.features lists id/target/event-time/PII column(s) {clash}")
    if both := sorted(set(ds.features.numeric) & set(ds.features.categorical)):
        problems.append(f"dataset.features: {both} listed as both numeric and categorical")
    return problems


def named_columns(config: PipelineConfig) -> dict[str, list[str]]:
    """Every column the params name, by the key that names them (checked against the data at ingest)."""
    ds, v = config.dataset, config.validation
    named = {
        "dataset.id_column": [ds.id_column] if ds.id_column else [],
        "dataset.target.column": [ds.target.column],
        "dataset.event_time_column": [ds.event_time_column] if ds.event_time_column else [],
        "dataset.features.numeric": list(ds.features.numeric),
        "dataset.features.categorical": list(ds.features.categorical),
        "dataset.features.exclude": list(ds.features.exclude),
        "dataset.sensitive_attributes": list(ds.sensitive_attributes),
        "dataset.pii_columns": list(ds.pii_columns),
        "validation.ranges": list(v.ranges),
        "validation.categories": list(v.categories),
        "validation.mostly": list(v.mostly),
        "fairness.bins": list(config.fairness.bins),
    }
    return {k: cols for k, cols in named.items() if cols}


def check_columns_exist(config: PipelineConfig, header: list[str], where: str) -> None:
    """Every column the params name is in `header` (the source's columns); raise naming them."""
    present = set(header)
    problems = []
    for key, cols in named_columns(config).items():
        missing = [c for c in cols if c not in present]
        if missing:
            problems.append(f"{key} names {missing}")
    if problems:
        hints = []
        for cols in named_columns(config).values():
            for c in cols:
                if c not in present:
                    close = difflib.get_close_matches(c, header, n=1)
                    if close:
                        hints.append(f"{c!r} -> {close[0]!r}?")
        raise ConfigError(
            f"params name column(s) that {where} does not have: {'; '.join(problems)}. "
            f"Its columns: {header}" + (f". Did you mean: {', '.join(hints)}" if hints else "")
        )
