"""Reading the source dataset and giving every column its declared type.

The source is read as text first and converted column by column, so that a value
that does not fit its column is reported (column, row numbers) instead of being
turned into a silent NaN or making pandas guess a different type for the whole
column. Real extracts contain text ``nan`` and numbers in E notation
(``5.00E+05``); both are handled here.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import io
from typing import Any, Literal

import numpy as np
import pandas as pd

from pipeline.core.errors import (
    SourceError,
)
from pipeline.core.settings import DEFAULT_NA_VALUES, DatasetConfig, SourceConfig

# Fixed key: day assignment must never change between runs or machines.
_HASH_KEY = "pipeline-days-v1"[:16]


NOT_FINITE = "not a finite number (inf, or beyond float64's range)"


def missing_tokens(src: SourceConfig) -> tuple[str, ...]:
    """The spellings of "missing": the defaults plus `na_values`, or `na_values` alone."""
    if src.replace_default_na_values:
        return tuple(src.na_values)
    return tuple(dict.fromkeys(DEFAULT_NA_VALUES + tuple(src.na_values)))


def is_per_day(src: SourceConfig) -> bool:
    return "{date" in src.uri


def landing_root(src: SourceConfig) -> str:
    """Where delivered files must stay: `root`, else the static directory part of `uri`."""
    if src.root:
        return src.root.rstrip("/")
    cuts = [i for i in (src.uri.find(ch) for ch in "{*?[") if i >= 0]
    static = src.uri[: min(cuts)] if cuts else src.uri
    return static.rsplit("/", 1)[0] if "/" in static else "."


# The derived key of datasets without an id column: blake2b-64 (hex) of the row's values
# (every source column but the target, in source order, after stripping and turning the
# missing spellings into nulls), so the same input row gets the same key on every rerun.
ROW_KEY = "row_key"


def row_keys(text: pd.DataFrame, target_column: str | None, rows: pd.Index | None = None) -> np.ndarray:
    """Row keys of `text` (all rows, or only `rows`), as an object array aligned with `text`."""
    import hashlib

    cols = [c for c in text.columns if c not in (target_column, "_line")]
    out = np.full(len(text), None, dtype=object)
    subset = text if rows is None else text.loc[rows]
    if subset.empty:
        return out
    joined = subset[cols].astype(object).where(subset[cols].notna(), "\x00").astype(str).agg("\x1f".join, axis=1)
    keys = [hashlib.blake2b(v.encode(), digest_size=8).hexdigest() for v in joined]
    positions = np.arange(len(text)) if rows is None else text.index.get_indexer(rows)
    out[positions] = keys
    return out


@dataclasses.dataclass(frozen=True)
class Schema:
    """The resolved roles and types of a dataset's columns."""

    id_column: str
    target_column: str
    event_time_column: str | None
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    pii: tuple[str, ...]
    id_is_integer: bool
    # Sensitive attributes excluded from the features: kept in batches and snapshots for the
    # fairness checks, never given to the model.
    sensitive: tuple[str, ...] = ()
    # True when the dataset has no id column and id_column is the derived ROW_KEY.
    id_derived: bool = False

    @property
    def protected(self) -> tuple[str, ...]:
        """Columns whose values never appear in validation outputs (counts and shares only)."""
        return (self.id_column,) + self.pii + self.sensitive

    @property
    def features(self) -> tuple[str, ...]:
        return self.numeric + self.categorical

    @property
    def batch_columns(self) -> tuple[str, ...]:
        """Columns of a raw daily batch (what arrives to be scored: no target)."""
        cols: tuple[str, ...] = (self.id_column,)
        if self.event_time_column:
            cols += (self.event_time_column,)
        return cols + self.features + self.pii + self.sensitive

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Schema:
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**values)


# --------------------------------------------------------------------------- reading


def _version(uri: str, s3_options) -> str:
    from pipeline.core.storage import external

    version = external.version(uri, s3_options)
    if version is None:
        raise SourceError(f"source file not found: {uri}")
    return version


def read_source_text(cfg: DatasetConfig, storage=None) -> pd.DataFrame:
    """The source with every cell as text (None where missing); an s3:// source is reached with the
    storage's S3 endpoint and credentials."""
    s3_options = storage.s3_options if storage is not None else None
    src = cfg.source
    # Parsed once per process and file version (size and mtime, or ETag).
    version = _version(src.uri, s3_options)
    return _read_cached(src.uri, version, s3_options, src.format, src.csv_delimiter, missing_tokens(src)).copy()


@functools.lru_cache(maxsize=4)
def _read_cached(
    uri: str, _version_key: str, s3_options, fmt: str, delimiter: str, na_values: tuple[str, ...]
) -> pd.DataFrame:
    from pipeline.core.storage import external

    try:
        data = external.read(uri, s3_options)
    except FileNotFoundError as exc:
        raise SourceError(f"source file not found: {uri}") from exc
    return _parse_source(data, uri, fmt, delimiter, na_values)


def _parse_source(data: bytes, uri: str, fmt: str, delimiter: str, na_values: tuple[str, ...]) -> pd.DataFrame:
    compression: Literal["gzip"] | None = "gzip" if uri.endswith(".gz") else None
    if fmt == "csv":
        try:
            frame = pd.read_csv(
                io.BytesIO(data),
                sep=delimiter,
                dtype=str,
                keep_default_na=False,
                na_filter=False,
                compression=compression,
                encoding="utf-8",
            )
        except UnicodeDecodeError as exc:
            raise SourceError(f"{uri}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
        except pd.errors.ParserError as exc:
            raise SourceError(f"{uri}: malformed CSV: {exc}") from exc
        except pd.errors.EmptyDataError as exc:
            raise SourceError(f"{uri}: empty file") from exc
    else:
        try:
            frame = pd.read_parquet(io.BytesIO(data))
        except Exception as exc:  # pyarrow raises several types for corrupt files
            raise SourceError(f"{uri}: not a readable Parquet file: {exc}") from exc
        frame = frame.astype(object).where(frame.notna(), None)
        frame = frame.map(lambda v: None if v is None else str(v))
    missing = set(na_values)
    # object dtype keeps None as None (pandas 3's str dtype would turn it into NaN).
    return frame.astype(object).map(lambda v: None if v is None or v.strip() in missing else v.strip())


# --------------------------------------------------------------------------- schema


def to_float(values: pd.Series) -> pd.Series:
    """Text to float64 exactly as ``pd.to_numeric(errors="coerce")`` does, Arrow's cast first (C++,
    no Python step per value); pandas' parser runs only on a column Arrow refuses, i.e. one with
    a value that is not a plain number (a misfit, spaces, 'nan'), so bad deliveries keep their
    messages. What Arrow accepts, pandas accepts with the same value."""
    if values.dtype != object and not isinstance(values.dtype, pd.StringDtype):
        return pd.to_numeric(values, errors="coerce").astype("float64")
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        text = pa.array(values.astype(object).to_numpy(), type=pa.string(), from_pandas=True)
        parsed = pc.cast(text, pa.float64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        return pd.to_numeric(values, errors="coerce").astype("float64")
    if np.isnan(parsed).sum() != text.null_count:  # text 'nan' parsed: pandas' rules decide
        return pd.to_numeric(values, errors="coerce").astype("float64")
    return pd.Series(parsed, index=values.index, dtype="float64")


def _parses_as_number(values: pd.Series) -> bool:
    present = values.dropna()
    return bool(len(present)) and bool(to_float(present).notna().all())


def resolve_schema(cfg: DatasetConfig, text: pd.DataFrame, numeric_columns: list[str] | None = None) -> Schema:
    """Roles from the config; unlisted feature columns typed by their content (or, when given,
    by `numeric_columns`: the columns whose every value parses as a number)."""
    sensitive = tuple(c for c in cfg.sensitive_attributes if c in cfg.features.exclude)
    required = [
        *([cfg.id_column] if cfg.id_column else []),
        cfg.target.column,
        *cfg.features.numeric,
        *cfg.features.categorical,
        *cfg.pii_columns,
        *sensitive,
    ]
    if cfg.event_time_column:
        required.append(cfg.event_time_column)
    missing = [c for c in required if c not in text.columns]
    if missing:
        raise SourceError(f"source {cfg.source.uri} lacks configured column(s) {missing}; it has {list(text.columns)}")
    special = {cfg.id_column, cfg.target.column, cfg.event_time_column, *cfg.pii_columns, *cfg.features.exclude}
    numeric = list(cfg.features.numeric)
    categorical = list(cfg.features.categorical)
    for col in text.columns:
        if col in special or col in numeric or col in categorical or col == "_line":
            continue
        is_number = col in numeric_columns if numeric_columns is not None else _parses_as_number(text[col])
        (numeric if is_number else categorical).append(col)
    if cfg.id_column:
        id_values = text[cfg.id_column].dropna().astype(str)
        id_is_integer = bool(len(id_values)) and bool(id_values.str.fullmatch(r"[+-]?\d{1,18}").all())
    else:
        id_is_integer = False
    return Schema(
        id_column=cfg.id_column or ROW_KEY,
        id_derived=cfg.id_column is None,
        target_column=cfg.target.column,
        event_time_column=cfg.event_time_column,
        numeric=tuple(numeric),
        categorical=tuple(categorical),
        pii=tuple(cfg.pii_columns),
        id_is_integer=id_is_integer,
        sensitive=sensitive,
    )


# --------------------------------------------------------------------------- days


def parse_timestamps(values: pd.Series) -> pd.Series:
    """UTC timestamps; NaT only where a value is missing or unreadable.

    pandas infers one format from the first value, which turns other valid spellings
    in the same column into NaT; ISO 8601 covers the common ones, and the rest are
    parsed value by value.
    """
    parsed = pd.to_datetime(values, errors="coerce", utc=True, format="ISO8601")
    retry = values.notna() & parsed.isna()
    if retry.any():
        parsed[retry] = pd.to_datetime(values[retry], errors="coerce", utc=True, format="mixed")
    return parsed


def row_numbers(mask: pd.Series, limit: int = 5) -> list[int]:
    return [int(i) for i in mask[mask].index[:limit]]


def assign_days(cfg: DatasetConfig, text: pd.DataFrame, strict: bool = True) -> pd.Series:
    """The day each row belongs to (a Series of datetime.date; None for rows without a
    readable event time unless `strict`)."""
    if cfg.event_time_column:
        ts = parse_timestamps(text[cfg.event_time_column])
        if not strict:
            return pd.Series(np.where(ts.isna(), None, ts.dt.date.astype(object)), index=text.index)
        if ts.isna().any():
            bad = ts.isna()
            raise SourceError(
                f"event-time column {cfg.event_time_column!r}: {int(bad.sum())} row(s) "
                f"without a readable timestamp (rows {row_numbers(bad)})"
            )
        return ts.dt.date
    ids = text[cfg.id_column].to_numpy(dtype=object) if cfg.id_column else np.full(len(text), None, dtype=object)
    # Rows without an id (or datasets without one) are placed by their row key.
    missing = pd.isna(ids) | (ids == "")
    if missing.any():
        ids = ids.copy()
        ids[missing] = row_keys(text, cfg.target.column, text.index[missing])[missing]
    start = cfg.batching.start_date
    lookup = np.array([start + dt.timedelta(days=i) for i in range(cfg.batching.days)], dtype=object)
    return pd.Series(lookup[day_offsets(cfg, ids)], index=text.index)


def day_offsets(cfg: DatasetConfig, ids: np.ndarray) -> np.ndarray:
    """Days after `batching.start_date` of rows keyed by `ids` (text, none missing): a keyed hash,
    so a row's day never changes between runs or machines."""
    hashed = pd.util.hash_array(ids.astype(object), hash_key=_HASH_KEY, categorize=False)
    return (hashed % np.uint64(cfg.batching.days)).astype("int64")


def day_rows(cfg: DatasetConfig, text: pd.DataFrame, day: dt.date) -> pd.DataFrame:
    days = assign_days(cfg, text)
    return text[days == day]


def available_days(cfg: DatasetConfig, text: pd.DataFrame) -> list[dt.date]:
    return sorted(set(assign_days(cfg, text)))
