"""The audit trail: one JSON record per decision, appended under ``audit/`` and never rewritten.

Kinds: ``quarantine`` (a delivery or its rows), ``gate`` (a candidate's verdict), ``promotion``,
``rollback``, ``registry`` (other alias moves, refusals, approvals), ``retraining_trigger``,
``alert`` and ``alert_resolved``. Each says what, when, why, the run id and the actor.

    audit/YYYY-MM-DD/<HHMMSSffffff>-<kind>-<id>.json

``python -m pipeline audit list [--since D] [--kind K]`` shows them.
"""

from __future__ import annotations

import datetime as dt
import getpass
import logging
import os
import uuid
from typing import Any

from pipeline.core import layout
from pipeline.core.storage import Storage

log = logging.getLogger(__name__)

KINDS = ("quarantine", "gate", "promotion", "rollback", "registry", "retraining_trigger", "alert", "alert_resolved")


def _actor() -> str:
    for var in ("PIPELINE_ACTOR", "AIRFLOW_CTX_DAG_OWNER"):
        if os.environ.get(var):
            return os.environ[var]
    try:
        return getpass.getuser()
    except Exception:  # no user name in some containers
        return "unknown"


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
    entry = {
        "kind": kind,
        "what": what,
        "why": why,
        "at": now.isoformat(timespec="microseconds"),
        "run_id": run_id or os.environ.get("AIRFLOW_CTX_DAG_RUN_ID"),
        "actor": actor or _actor(),
        **details,
    }
    key = layout.audit_record(now, kind, uuid.uuid4().hex[:8])
    try:
        storage.write_json(key, entry)
    except Exception as exc:  # noqa: BLE001 - logged, and the caller's own record stands
        log.warning("could not write audit record %s: %s", key, exc)
    return entry


def list_records(storage: Storage, since: dt.date | None = None, kind: str | None = None) -> list[dict]:
    out = []
    for day in storage.list_children(layout.audit_day()):
        try:
            if since and dt.date.fromisoformat(day) < since:
                continue
        except ValueError:
            continue
        for key in sorted(storage.list_keys(layout.audit_day(day))):
            if kind and f"-{kind}-" not in key.rsplit("/", 1)[-1]:
                continue
            out.append(storage.read_json(key))
    return sorted(out, key=lambda r: r["at"])
