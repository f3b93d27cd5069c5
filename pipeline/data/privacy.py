"""The privacy gate of intake: declared PII is pseudonymised on arrival, undeclared PII is refused.

* **Declared PII** (``dataset.pii_columns``) is replaced by a keyed hash (HMAC-SHA256 under a
  secret that is not in storage) as soon as a delivery is read, before anything is written:
  staging, raw, quarantined rows and the single-file source's split hold the hash, never the
  value. Equal values keep equal hashes (joins and duplicate checks still work); without the key
  nobody can test a guess. Snapshots then drop the columns altogether.
* **Undeclared PII**: every other delivered column (but the id and the target) is sampled and
  matched against e-mail, phone, payment card (Luhn), US SSN, UK NINO and IBAN (mod 97)
  patterns. A column in which at least ``privacy.min_share`` of the sampled values match one
  kind fails the delivery, naming the column, the kind and the counts, never a value.

The key: ``PIPELINE_PII_KEY``, else one derived from the model signing key
(:mod:`pipeline.model.signing`), so a deployment has one secret to hand out.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.core.keys import signing_key

KEY_ENV = "PIPELINE_PII_KEY"
HASH_PREFIX = "pii:"
SAMPLE_ROWS = 2000


def _key() -> bytes:
    if os.environ.get(KEY_ENV):
        return os.environ[KEY_ENV].encode()
    return hmac.new(signing_key(create=True), b"pipeline-pii-pseudonymisation-v1", hashlib.sha256).digest()


def pseudonymise(frame: pd.DataFrame, columns: tuple[str, ...] | list[str]) -> pd.DataFrame:
    """`frame` with each value of `columns` replaced by its keyed hash (nulls stay null)."""
    present = [c for c in columns if c in frame.columns]
    if not present:
        return frame
    key = _key()
    out = frame.copy()
    for col in present:
        values = out[col]
        mask = values.notna().to_numpy()
        hashed = np.full(len(values), None, dtype=object)
        hashed[mask] = [
            HASH_PREFIX + hmac.new(key, str(v).encode(), hashlib.sha256).hexdigest()[:32]
            for v in values.to_numpy()[mask]
        ]
        out[col] = pd.Series(hashed, index=values.index, dtype=object)
    return out


# --------------------------------------------------------------------------- detection


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _iban_ok(value: str) -> bool:
    s = value.replace(" ", "").upper()
    rearranged = s[4:] + s[:4]
    number = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(number) % 97 == 1


_EMAIL = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$")
_PHONE = re.compile(r"^\+?\(?\d[\d\s().-]{6,22}\d$")
_CARD = re.compile(r"^\d{4}([ -]?\d{3,4}){2,3}(\d{1,3})?$")
_SSN = re.compile(r"^(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}$")
_NINO = re.compile(r"^(?!BG|GB|NK|KN|TN|NT|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]$")
_IBAN = re.compile(r"^[A-Z]{2}\d{2}( ?[A-Z0-9]){11,30}$")
_PLAIN_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def _is_phone(v: str) -> bool:
    if _PLAIN_NUMBER.match(v) and not v.startswith("+"):
        return False  # an amount, a code: numbers alone are not phone numbers
    digits = sum(ch.isdigit() for ch in v)
    return bool(_PHONE.match(v)) and 9 <= digits <= 15 and not _SSN.match(v)


def _is_card(v: str) -> bool:
    if len(v) < 13:  # fewer characters than a card has digits: most values stop here
        return False
    digits = v.replace(" ", "").replace("-", "")
    return bool(_CARD.match(v)) and 13 <= len(digits) <= 19 and _luhn(digits)


CARD = "payment card number (Luhn-valid)"
# Kinds of personal data: one function and one entry each.
DETECTORS: dict[str, Callable[[str], bool]] = {
    "e-mail address": lambda v: bool(_EMAIL.match(v)),
    CARD: _is_card,
    "US social security number": lambda v: bool(_SSN.match(v)),
    "UK national insurance number": lambda v: bool(_NINO.match(v.upper())),
    "IBAN": lambda v: bool(_IBAN.match(v)) and _iban_ok(v),
    "phone number": _is_phone,
}


def find_undeclared_pii(
    text: pd.DataFrame | pa.Table, columns: list[str], min_share: float, sample_rows: int = SAMPLE_ROWS
) -> list[str]:
    """One problem per column whose sampled values look like personal data (never quoting them)."""
    problems = []
    if isinstance(text, pa.Table):
        sample = (
            text if text.num_rows <= sample_rows else text.take(pa.array(_sample_positions(text.num_rows, sample_rows)))
        )
    else:
        sample = text if len(text) <= sample_rows else text.sample(n=sample_rows, random_state=0)
    for col in columns:
        values = _present_text(sample, col)
        if not len(values):
            continue
        for kind, hits in _matches(values):
            if hits >= 2 and hits / len(values) >= min_share:
                problems.append(
                    f"column {col!r} looks like personal data: {hits} of {len(values)} sampled "
                    f"value(s) match the {kind} pattern; declare it in dataset.pii_columns (it is then "
                    "pseudonymised) or remove it from the delivery"
                )
                break
    return problems


def _sample_positions(rows: int, n: int) -> np.ndarray:
    """The positions ``frame.sample(n, random_state=0)`` takes from `rows` rows."""
    return pd.RangeIndex(rows).to_series().sample(n=n, random_state=0).to_numpy()


def _present_text(sample: pd.DataFrame | pa.Table, col: str) -> pa.Array:
    """The column's values as text, without the missing and the blank."""
    if isinstance(sample, pa.Table):
        values = sample.column(col).drop_null().cast(pa.string())
    else:
        values = pa.array([str(v) for v in sample[col].dropna().tolist()], type=pa.string())
    values = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    return values.filter(pc.greater(pc.utf8_length(pc.utf8_trim_whitespace(values)), 0))


def _matches(values: pa.Array):
    """(kind, hits) for each detector that applies: a column of plain numbers (amounts, codes) can
    only hide card numbers, and only in values of 13 characters or more. Arrow's regex decides the
    plain-number case when it can (what it matches, Python's matches too); Python decides the rest."""
    if pc.all(pc.match_substring_regex(values, _PLAIN_NUMBER.pattern)).as_py():
        long_enough = values.filter(pc.greater_equal(pc.utf8_length(values), 13)).to_pylist()
        yield CARD, sum(1 for v in long_enough if _is_card(v))
        return
    texts = values.to_pylist()
    detectors = DETECTORS
    if all(_PLAIN_NUMBER.match(v) for v in texts):
        detectors = {CARD: _is_card}
    for kind, matches in detectors.items():
        yield kind, sum(1 for v in texts if matches(v))
