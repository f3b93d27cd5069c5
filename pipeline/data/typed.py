"""Text cells into typed columns by the contract's schema: numbers (finite, with the bad rows named),
timestamps, canonical labels; row by row for a delivery, so untypable rows can be quarantined."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.core.errors import SourceError
from pipeline.data.source import NOT_FINITE, Schema, parse_timestamps, row_keys, row_numbers, to_float

_INTEGRAL_FORM = re.compile(r"^[+-]?(\d+\.\d*|\d*\.\d+|\d+)([eE][+-]?\d+)?$")


def canonical_label(values: pd.Series) -> pd.Series:
    """Text labels, with numeric spellings of whole numbers unified ('1.00E+00' -> '1')."""

    def canon(v: str | None) -> str | None:
        if v is None or (isinstance(v, float) and v != v):  # None or NaN
            return None
        v = str(v)
        if _INTEGRAL_FORM.match(v) and ("." in v or "e" in v.lower()):
            f = float(v)
            if f.is_integer():
                return str(int(f))
        return v

    # Only a number written with a point or an exponent can change ('1.00E+00' -> '1'): every other
    # value keeps its text, so the per-value rule runs on those few, found by Arrow's regex.
    import pyarrow as pa
    import pyarrow.compute as pc

    objects = values.astype(object)
    present = objects.notna().to_numpy()
    out = np.full(len(objects), None, dtype=object)
    text = objects[present].astype(str).to_numpy(dtype=object)
    out[present] = text
    if len(text):
        maybe = pc.match_substring_regex(pa.array(text, type=pa.string()), "[.eE]").to_numpy(zero_copy_only=False)
        if maybe.any():
            where = np.flatnonzero(present)[maybe]
            out[where] = [canon(v) for v in text[maybe]]
    return pd.Series(out, index=values.index).astype("str")


def coerce_types(text: pd.DataFrame, schema: Schema, columns: Iterable[str] | None = None) -> pd.DataFrame:
    """Convert text columns to their types; raise naming the column and rows on any misfit.

    Row numbers in messages are the frame's index (0-based data rows of the source).
    """
    columns = list(columns) if columns is not None else list(text.columns)
    out: dict[str, pd.Series] = {}
    problems = []
    for col in columns:
        values = text[col]
        if col in schema.numeric:
            parsed = to_float(values)
            bad = values.notna() & parsed.isna()
            if bad.any():
                problems.append(f"column {col!r}: {int(bad.sum())} value(s) are not numbers (rows {row_numbers(bad)})")
            infinite = pd.Series(np.isinf(parsed.to_numpy()), index=parsed.index)
            if infinite.any():
                problems.append(
                    f"column {col!r}: {int(infinite.sum())} value(s) {NOT_FINITE} (rows {row_numbers(infinite)})"
                )
            out[col] = parsed
        elif col == schema.id_column:
            if schema.id_is_integer:
                is_whole = values.str.fullmatch(r"[+-]?\d{1,18}").fillna(False).astype(bool)
                bad = values.notna() & ~is_whole
                if bad.any():
                    problems.append(
                        f"id column {col!r}: {int(bad.sum())} id(s) are not whole numbers (rows {row_numbers(bad)})"
                    )
                out[col] = pd.to_numeric(values.where(is_whole), errors="coerce").astype("Int64")
            else:
                out[col] = values.astype("str")
        elif col == schema.event_time_column:
            parsed = parse_timestamps(values)
            bad = values.notna() & parsed.isna()
            if bad.any():
                problems.append(
                    f"event-time column {col!r}: {int(bad.sum())} value(s) are not timestamps (rows {row_numbers(bad)})"
                )
            out[col] = parsed
        elif col in schema.categorical or col == schema.target_column or col in schema.sensitive:
            out[col] = canonical_label(values)
        else:
            out[col] = values.astype("str")
    if problems:
        raise SourceError("; ".join(problems))
    return pd.DataFrame(out, index=text.index)


# --------------------------------------------------------------------------- row-level typing


@dataclasses.dataclass
class TypedRows:
    """A delivery typed against its contract: good rows, and the rows that did not fit."""

    typed: pd.DataFrame  # every row, typed (misfits as null)
    bad: pd.Series  # row label -> reasons ("column 'AGE': not a number; ...")
    problems: list[str]  # one line per column and kind, with counts and rows
    duplicates_dropped: int = 0


def _mask_rows(mask: pd.Series, limit: int = 5) -> list:
    return [i.item() if hasattr(i, "item") else i for i in mask[mask].index[:limit]]


def type_rows(
    text: pd.DataFrame, schema: Schema, target_column: str | None = None, row_label: str = "line"
) -> TypedRows:
    """Type every contract column; misfits are reported per row and column, never coerced
    into another type. Values themselves are never quoted (some columns are PII)."""
    columns = [c for c in schema.batch_columns if not (schema.id_derived and c == schema.id_column)]
    if target_column and target_column in text.columns:
        columns.append(target_column)
    reasons: dict[str, pd.Series] = {}
    problems: list[str] = []
    out: dict[str, pd.Series] = {}

    def flag(mask: pd.Series, what: str, col: str) -> None:
        if mask.any():
            reasons[f"{col}:{what}"] = mask.map({True: f"column {col!r}: {what}", False: None})
            problems.append(f"column {col!r}: {int(mask.sum())} value(s) {what} ({row_label}s {_mask_rows(mask)})")

    for col in columns:
        values = text[col]
        if col in schema.numeric:
            parsed = to_float(values)
            flag(values.notna() & parsed.isna(), "not a number", col)
            # Text 'inf' and numbers beyond float64 parse to ±inf: a misfit, never a value.
            infinite = pd.Series(np.isinf(parsed.to_numpy()), index=parsed.index)
            flag(infinite, NOT_FINITE, col)
            out[col] = parsed.where(~infinite)
        elif col == schema.id_column:
            flag(values.isna(), "missing (no id)", col)
            if schema.id_is_integer:
                is_whole = values.astype(object).where(values.notna(), "").astype(str).str.fullmatch(r"[+-]?\d{1,18}")
                flag(values.notna() & ~is_whole, "not a whole-number id", col)
                out[col] = pd.to_numeric(values.where(is_whole), errors="coerce").astype("Int64")
            else:
                out[col] = values.astype("str")
        elif col == schema.event_time_column:
            parsed = parse_timestamps(values)
            flag(values.notna() & parsed.isna(), "not a timestamp", col)
            out[col] = parsed
        elif col in schema.categorical or col == schema.target_column or col in schema.sensitive:
            out[col] = canonical_label(values)
        else:
            out[col] = values.astype("str")
    typed = pd.DataFrame(out, index=text.index)
    if schema.id_derived:
        typed.insert(0, schema.id_column, pd.Series(row_keys(text, target_column), index=text.index, dtype="str"))
    return _judge_rows(typed, reasons, problems, schema, row_label)


def _duplicated(frame: pd.DataFrame) -> pd.Series:
    """``frame.duplicated(keep="first")``; rows with distinct hashes are distinct, so the exact
    comparison runs only when two rows hash alike."""
    hashes = pd.util.hash_pandas_object(frame, index=False)
    if not hashes.duplicated().any():
        return pd.Series(False, index=frame.index)
    return frame.duplicated(keep="first")


def _judge_rows(
    typed: pd.DataFrame, reasons: dict[str, pd.Series], problems: list[str], schema: Schema, row_label: str
) -> TypedRows:
    """Rows with a misfit named per row; exact duplicates dropped; different rows sharing an id rejected."""
    bad = pd.Series(None, index=typed.index, dtype=object)
    if reasons:
        frame = pd.DataFrame(reasons, index=typed.index)
        flagged = frame.notna().any(axis=1)
        bad[flagged] = frame[flagged].apply(lambda r: "; ".join(v for v in r if isinstance(v, str) and v), axis=1)
    # Exact duplicate rows are dropped (counted); different rows sharing an id are rejected.
    ok = bad.isna()
    dup_exact = _duplicated(typed if ok.all() else typed[ok])
    duplicates = int(dup_exact.sum())
    if duplicates:
        typed = typed.drop(index=dup_exact[dup_exact].index)
        bad = bad.drop(index=dup_exact[dup_exact].index)
        ok = bad.isna()
    ids = typed.loc[ok, schema.id_column]
    conflicting = ids.duplicated(keep=False)
    if conflicting.any():
        mask = pd.Series(False, index=typed.index)
        mask[conflicting[conflicting].index] = True
        n_ids = int(ids[conflicting].nunique())
        bad = bad.where(~mask, f"column {schema.id_column!r}: id shared by rows with different values")
        problems.append(
            f"column {schema.id_column!r}: {n_ids} id(s) appear on {int(mask.sum())} rows with "
            f"different values ({row_label}s {_mask_rows(mask)}); conflicting duplicates are rejected"
        )
    return TypedRows(typed=typed, bad=bad.dropna(), problems=problems, duplicates_dropped=duplicates)


# --------------------------------------------------------------------------- clean deliveries in Arrow

_WHOLE_ID = r"^-?[0-9]{1,18}$"


def type_table(
    table: pa.Table, lines: np.ndarray, schema: Schema, target_column: str | None = None, row_label: str = "line"
) -> TypedRows | None:
    """`type_rows` for a delivery held as Arrow text (the split's days), cast column-wise in Arrow.

    Only for the clean case: None as soon as a column has a value that would be flagged (or a
    derived id), and `type_rows` then names the misfits, so every message stays its own. What Arrow
    casts, pandas parses to the same value (`to_float`); the typed frame is the one `type_rows`
    returns, and the row checks (duplicates, conflicting ids) are shared."""
    if schema.id_derived:
        return None
    columns = list(schema.batch_columns)
    if target_column and target_column in table.column_names:
        columns.append(target_column)
    index = pd.Index(lines)
    out: dict[str, pd.Series] = {}
    for col in columns:
        values = table.column(col)
        if col in schema.numeric:
            try:
                parsed = pc.cast(values, pa.float64())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                return None  # a misfit (or a spelling only pandas reads): type_rows decides
            numbers = parsed.to_numpy(zero_copy_only=False)  # nulls become NaN
            if int((~np.isfinite(numbers)).sum()) != parsed.null_count:  # text 'nan', inf: type_rows
                return None
            out[col] = pd.Series(numbers, index=index, dtype="float64")
        elif col == schema.id_column:
            if values.null_count:
                return None
            if schema.id_is_integer:
                if not pc.all(pc.match_substring_regex(values, _WHOLE_ID)).as_py():
                    return None
                ids = pc.cast(values, pa.int64()).to_numpy(zero_copy_only=False)
                out[col] = pd.Series(ids, index=index).astype("Int64")
            else:
                out[col] = _strings(values, index)
        elif col == schema.event_time_column:
            text = _objects(values, index)
            parsed_times = parse_timestamps(text)
            if (text.notna() & parsed_times.isna()).any():
                return None
            out[col] = parsed_times
        elif col in schema.categorical or col == target_column or col in schema.sensitive:
            # Only a number written with a point or an exponent has another canonical spelling.
            if pc.any(pc.match_substring_regex(values, "[.eE]")).as_py():
                out[col] = canonical_label(_objects(values, index))
            else:
                out[col] = _strings(values, index)
        else:
            out[col] = _strings(values, index)
    return _judge_rows(pd.DataFrame(out, index=index), {}, [], schema, row_label)


def _objects(values, index: pd.Index) -> pd.Series:
    return pd.Series(values.to_numpy(zero_copy_only=False), index=index, dtype=object)


_STR = pd.StringDtype("pyarrow", na_value=np.nan)  # what ``.astype("str")`` gives


def _strings(values, index: pd.Index) -> pd.Series:
    """``_objects(values, index).astype("str")``, without a Python object per cell."""
    series = values.to_pandas(types_mapper={pa.string(): _STR, pa.large_string(): _STR}.get)
    series.index = index
    return series
