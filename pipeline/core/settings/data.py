"""Settings of the data stage: the dataset and its source, validation limits, the privacy gate.
params.yaml documents each key."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from .types import Flag, Fraction, Number, Positive, Section, Share, Text, Whole, frozen, frozen_map

DEFAULT_NA_VALUES = ("", "nan", "NaN", "NA", "N/A", "null", "NULL", "None")


class SourceConfig(Section):
    # One file holding every day, or a delivery per day: a template with {date} (e.g.
    # s3://landing/credit/dt={date}/*.csv, {date:%Y%m%d}), optionally with glob characters.
    uri: Text
    format: Literal["csv", "parquet"] = "csv"
    csv_delimiter: Text = ","
    na_values: tuple[Text, ...] = ()  # added to DEFAULT_NA_VALUES, or instead of them:
    replace_default_na_values: Flag = False
    root: Text | None = None  # the landing area (null: the static directory part of `uri`)
    max_bytes: Positive = 1 << 30  # per day's delivery, decompressed; over it: quarantined unread
    max_rows: Positive = 5_000_000


class TargetConfig(Section):
    column: Text
    positive_class: Text


class FeaturesConfig(Section):
    # Unlisted columns (not id/target/event time/PII/excluded) are typed by their content.
    numeric: tuple[Text, ...] = ()
    categorical: tuple[Text, ...] = ()
    exclude: tuple[Text, ...] = ()


class BatchingConfig(Section):
    start_date: dt.date  # without an event-time column: rows hashed by id onto `days` days from here
    days: Positive = 30
    label_delay_days: Whole = 14  # labels of day D arrive on D + this


class DatasetConfig(Section):
    name: Text
    source: SourceConfig
    target: TargetConfig
    batching: BatchingConfig
    id_column: Text | None = None  # without one, a stable row key is derived from each row's values
    event_time_column: Text | None = None
    features: FeaturesConfig = FeaturesConfig()
    sensitive_attributes: tuple[Text, ...] = ()
    pii_columns: tuple[Text, ...] = ()


class ValidationConfig(Section):
    gx_root: Text = "great_expectations"
    min_rows: Whole = 1
    max_rows: Whole | None = None
    max_null_fraction: Share = 0.05  # nulls tolerated in a feature column
    ranges: frozen_map(tuple[Number | None, Number | None]) = frozen()  # type: ignore[valid-type]
    categories: frozen_map(tuple[Text, ...]) = frozen()  # type: ignore[valid-type]
    # Share of values that must pass, per column and check; unlisted: 1.0 (not_null: 1 - max_null_fraction).
    mostly: frozen_map(frozen_map(Fraction)) = frozen()  # type: ignore[valid-type]
    max_rows_factor: Number = 5.0  # a batch over this many typical days fails
    # Untypable rows: fail the batch, or quarantine them while at most max_bad_row_share.
    row_policy: Literal["fail_batch", "quarantine_rows"] = "fail_batch"
    max_bad_row_share: Share = 0.0
    extra_columns: Literal["fail", "ignore"] = "fail"  # columns the contract does not know
    max_unknown_label_share: Share = 0.0  # labels for ids the day's batch lacks


class PrivacyConfig(Section):
    check_undeclared: Flag = True  # sample undeclared columns for personal data
    min_share: Fraction = 0.05  # of sampled values matching one kind, to fail the delivery
