"""Text cells into typed columns by the contract's schema: numbers (finite, with the bad rows named),
timestamps, canonical labels; row by row for a delivery, so untypable rows can be quarantined."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable

import numpy as np
import pandas as pd

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
    bad = pd.Series(None, index=text.index, dtype=object)
    if reasons:
        frame = pd.DataFrame(reasons, index=text.index)
        flagged = frame.notna().any(axis=1)
        bad[flagged] = frame[flagged].apply(lambda r: "; ".join(v for v in r if isinstance(v, str) and v), axis=1)
    # Exact duplicate rows are dropped (counted); different rows sharing an id are rejected.
    ok = bad.isna()
    dup_exact = typed[ok].duplicated(keep="first")
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
