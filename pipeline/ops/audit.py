"""The audit trail: one JSON record per decision, appended under ``audit/`` and never rewritten, in a
hash chain that shows any edit or deletion.

Kinds: ``quarantine`` (a delivery or its rows), ``gate`` (a candidate's verdict), ``promotion``,
``rollback``, ``registry`` (other alias moves, refusals, approvals), ``rescoring`` (a day's decisions
replaced by another model's), ``retraining_trigger``,
``alert`` and ``alert_resolved``. Each says what, when, why, the run id and the actor.

    audit/YYYY-MM-DD/<seq>.json      seq 000001, 000002, ... within the day

Each record carries ``prev`` (the hash of the record before it: the day's previous one, or the last
one of the latest earlier day) and ``hash`` (sha256 of its own canonical JSON without hash and hmac);
with a signing key configured (pipeline/core/keys.py) also ``hmac``, which a person with storage
access but not the key cannot recompute. Records are created with a conditional write (S3:
If-None-Match), so two writers never take the same place and none is overwritten.

``python -m pipeline audit list [--since D] [--kind K]`` shows them; ``audit verify`` walks the chain
and names the first record that was edited, removed or does not link. (Removing the newest records
of the newest day leaves no successor to notice; verify reports the head it ends on, which an
operator can compare with a copy kept elsewhere.)
"""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import hmac
import json
import logging
import os
import re
from typing import Any

from pipeline.core import keys, layout
from pipeline.core.errors import ArtefactError, ConfigError, PreconditionFailed, SignatureError
from pipeline.core.storage import Storage

log = logging.getLogger(__name__)

KINDS = (
    "quarantine",
    "gate",
    "promotion",
    "rollback",
    "registry",
    "rescoring",
    "retraining_trigger",
    "alert",
    "alert_resolved",
)
GENESIS = "0" * 64
_RECORD = re.compile(r"^(\d{6})\.json$")
MAX_APPEND_ATTEMPTS = 20


def _actor() -> str:
    for var in ("PIPELINE_ACTOR", "AIRFLOW_CTX_DAG_OWNER"):
        if os.environ.get(var):
            return os.environ[var]
    try:
        return getpass.getuser()
    except Exception:  # no user name in some containers
        return "unknown"


def _digest(entry: dict) -> str:
    body = {k: v for k, v in entry.items() if k not in ("hash", "hmac")}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _audit_key(key: bytes) -> bytes:
    return hashlib.sha256(b"audit-chain:" + key).digest()  # not the signing key itself


def _mac(digest: str, key: bytes) -> str:
    return hmac.new(_audit_key(key), digest.encode(), hashlib.sha256).hexdigest()


def _chained(storage: Storage, day: str) -> list[tuple[int, str]]:
    """(seq, key) of the day's chained records, in order."""
    found = []
    for key in storage.list_keys(layout.audit_day(day)):
        match = _RECORD.match(key.rsplit("/", 1)[-1])
        if match:
            found.append((int(match.group(1)), key))
    return sorted(found)


def _head(storage: Storage, day: str) -> tuple[int, str]:
    """The next record's seq on `day` and the hash it links to."""
    today = _chained(storage, day)
    if today:
        return today[-1][0] + 1, storage.read_json(today[-1][1])["hash"]
    for earlier in sorted((d for d in storage.list_children(layout.audit_day()) if d < day), reverse=True):
        chained = _chained(storage, earlier)
        if chained:
            return 1, storage.read_json(chained[-1][1])["hash"]
    return 1, GENESIS


def _signing_key() -> bytes | None:
    try:
        return keys.signing_key()
    except SignatureError:
        return None  # no key on this machine: the chain alone (hashes) protects the trail


def record(
    storage: Storage,
    kind: str,
    what: str,
    why: str = "",
    run_id: str | None = None,
    actor: str | None = None,
    **details: Any,
) -> dict:
    """Append one audit record; never raises (an audit write must not fail the decision it records)."""
    now = dt.datetime.now(dt.UTC)
    day = f"{now:%Y-%m-%d}"
    # As stored (JSON types only), so the hash is the same when the record is read back.
    entry = json.loads(
        json.dumps(
            {
                "kind": kind,
                "what": what,
                "why": why,
                "at": now.isoformat(timespec="microseconds"),
                "run_id": run_id or os.environ.get("AIRFLOW_CTX_DAG_RUN_ID"),
                "actor": actor or _actor(),
                **details,
            },
            default=str,
        )
    )
    key = None
    try:
        signing = _signing_key()
        for _ in range(MAX_APPEND_ATTEMPTS):
            seq, prev = _head(storage, day)
            entry.update(seq=seq, prev=prev)
            if signing is not None:
                entry["key_id"] = keys.key_id(signing)
            entry["hash"] = _digest(entry)
            if signing is not None:
                entry["hmac"] = _mac(entry["hash"], signing)
            key = layout.audit_record(day, seq)
            try:
                storage.write_json_if(key, entry, None)  # create-only: a place is never taken twice
                return entry
            except PreconditionFailed:
                continue  # another writer took this place: link to its record instead
        log.warning("could not append audit record (%s): the chain kept moving", what)
    except Exception as exc:  # noqa: BLE001 - logged, and the caller's own record stands
        log.warning("could not write audit record %s: %s", key, exc)
    return entry


def list_records(storage: Storage, since: dt.date | None = None, kind: str | None = None) -> list[dict]:
    if kind is not None and kind not in KINDS:
        raise ConfigError(f"unknown audit record kind {kind!r}; known: {', '.join(KINDS)}")
    out = []
    for day in storage.list_children(layout.audit_day()):
        try:
            if since and dt.date.fromisoformat(day) < since:
                continue
        except ValueError:
            continue
        for key in sorted(storage.list_keys(layout.audit_day(day))):
            name = key.rsplit("/", 1)[-1]
            if name.startswith(".") or not name.endswith(".json"):
                continue  # a local storage's write locks
            entry = storage.read_json(key)
            if not kind or entry.get("kind") == kind:
                out.append(entry)
    return sorted(out, key=lambda r: r["at"])


def verify(storage: Storage) -> dict:
    """Walk the chain from the first day: every record present (no gap in a day's seq), unchanged (its
    hash, and its hmac when a key is configured) and linked to the one before. Raises ArtefactError
    naming the first record that fails; returns the counts and the head it ends on."""
    signing = _signing_key()
    accepted = {keys.key_id(k): k for k in keys.accepted_keys()} if signing is not None else {}
    prev, count, unsigned, last, first_unsigned = GENESIS, 0, 0, None, None
    for day in sorted(storage.list_children(layout.audit_day())):
        for expected, (seq, key) in enumerate(_chained(storage, day), start=1):
            uri = storage.uri(key)
            if seq != expected:
                missing = storage.uri(layout.audit_record(day, expected))
                raise ArtefactError(f"audit trail broken: {missing} is missing (the day's records jump to {seq})")
            entry = storage.read_json(key)
            if not isinstance(entry, dict) or entry.get("hash") != _digest(entry):
                raise ArtefactError(f"audit trail broken: {uri} was edited (its content no longer has its hash)")
            if entry.get("prev") != prev:
                raise ArtefactError(
                    f"audit trail broken before {uri}: it links to {str(entry.get('prev'))[:12]}…, but the record "
                    f"before it is {str(prev)[:12]}… (a record or a whole day before it was removed)"
                )
            if "hmac" in entry and accepted:
                key_bytes = accepted.get(str(entry.get("key_id")))
                if key_bytes is None:
                    raise ArtefactError(
                        f"audit trail: {uri} is signed with key {entry.get('key_id')!r}, which this machine does not "
                        "accept (rewritten, or set PIPELINE_SIGNING_KEYS_PREVIOUS to the key it was signed with)"
                    )
                if not hmac.compare_digest(str(entry["hmac"]), _mac(entry["hash"], key_bytes)):
                    raise ArtefactError(f"audit trail broken: {uri} was rewritten without the key (hmac mismatch)")
            elif "hmac" not in entry:
                unsigned += 1
                first_unsigned = first_unsigned or uri
            prev, count, last = entry["hash"], count + 1, uri
    # Unsigned records (written where no key was set) are only as safe as the chain: they are counted.
    return {
        "records": count,
        "unsigned": unsigned,
        "first_unsigned": first_unsigned,
        "head": last,
        "head_hash": prev,
        "ok": True,
    }
