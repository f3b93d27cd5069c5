"""On-call alerts: what failed, why, where to look, what to do, without alert storms.

Pure logic (no Airflow): an :class:`Alert` is built from a failure's facts, classified into a
failure kind with a one-line runbook hint, and passed through the :class:`AlertLedger`, which
keeps one open record per cause under ``alerts/open/<dag>/<task>/<cause>.json``: the first
failure of a cause is sent, repeats within ``alerts.dedupe_minutes`` only raise its count, and
the next success of that task closes it with one short "resolved" message. The Airflow side
(plugins/pipeline_airflow/alerting.py) sends through Airflow notifiers.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import html
import json
import re
from typing import Any

from pipeline.core.storage import Storage

# Transient failures from outside the pipeline (botocore, the OS): storage outages.
OUTSIDE_STORAGE_ERRORS = (
    "EndpointConnectionError",
    "ReadTimeoutError",
    "ConnectTimeoutError",
    "ConnectionClosedError",
    "ClientError",
    "NoCredentialsError",
    "OSError",
    "ConnectionError",
    "TimeoutError",
)

RUNBOOK = {
    "bad_data": "Bad data: nothing was published for this day and committed data is unchanged. Open the "
    "quarantined delivery and the failing validation page (`python -m pipeline quarantine list --since <day>`) "
    "and ask the provider for a corrected delivery in the landing area.",
    "config": "Config: params.yaml disagrees with itself, the source or the data contract. Fix the params (or "
    "change the contract on purpose: `python -m pipeline contract update --reason ...`).",
    "storage": "Storage outage: the storage or source endpoint failed after the retries. Check the endpoint, the "
    "credentials (Airflow connection aws_default) and free space; every write is atomic, so a rerun is safe "
    "once it is back.",
    "gate_rejection": "Gate rejection: the candidate was kept but not promoted; the champion keeps serving. Read "
    "the evaluation report; retrain with more data, or promote by hand with "
    "`python -m pipeline models promote <version> --force --reason ...`.",
    "artefact": "Artefact: a stored model, manifest or record is missing or unreadable. Restore it from a backup, "
    "or rerun the step that writes it (see the task log).",
    "lateness": "Lateness: the day's run has not finished by its deadline. Check whether the delivery arrived "
    "(the ingest task skips while nothing is delivered), whether tasks are queued (workers, pools), "
    "and the run's task logs; analysts wait for this partition.",
    "freshness": "Freshness: a zone is behind its limit (each one named above with where to look; "
    "`python -m pipeline status` shows them all). A late delivery: ask the provider, the landing area is "
    "named; missing labels: check the label feed; an old champion or stale reference: run training_pipeline; "
    "no recent drift run: check drift_monitoring. The check passes (and says resolved) once the zone catches up.",
    "monitoring": "Monitoring findings: the weekly drift run decided (its statistics, report and decision are "
    "written) and found what needs a person, each named above. Open the drift report (link). A data-quality "
    "break: find the delivery or upstream change behind it (no retraining happens on broken data); a segment "
    "breach: read the group's table in the report and decide with the model owner (retrain with "
    "`python -m pipeline run-training`, or set monitoring.policy.retrain_on_segment_breach); a retraining "
    "suppressed by its limit: drift persists, retrain by hand if the report supports it. The next weekly run "
    "without findings says resolved.",
    "unknown": "Unexpected error: read the task log and fix the cause.",
}


# Kinds Airflow retries (transient); bad data, config and artefacts fail at once.
RETRYABLE_KINDS = ("storage", "unknown")


def clear_advice(dag_id: str, task_id: str, run_id: str) -> str:
    """The exact clear that reruns the failed task and what depends on it (what the UI's Clear does)."""
    return (
        f"Then clear `{task_id}` with its downstream tasks in run {run_id}: Airflow UI → the failed task → "
        f"Clear → Downstream, or `POST /api/v2/dags/{dag_id}/clearTaskInstances` with "
        f'{{"dag_run_id": "{run_id}", "task_ids": ["{task_id}"], "include_downstream": true, "only_failed": false, '
        f'"dry_run": false}}. A cleared task reads the day\'s delivery again, so the corrected one is used.'
    )


def classify(error_type: str) -> str:
    """The alert kind of an error, by its class name: what pipeline/core/errors.py says of it."""
    from pipeline.core import errors

    found = getattr(errors, error_type, None)
    if isinstance(found, type) and issubclass(found, Exception):
        return getattr(found, "kind", "unknown")
    return "storage" if error_type in OUTSIDE_STORAGE_ERRORS else "unknown"


@dataclasses.dataclass
class Alert:
    dag_id: str
    task_id: str
    run_id: str
    partition_date: str | None
    try_number: int | None
    max_tries: int | None
    error_type: str
    summary: str
    kind: str = ""
    links: dict[str, str] = dataclasses.field(default_factory=dict)
    log_url: str | None = None
    at: str = dataclasses.field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    repeats: int = 0  # failures with the same cause suppressed since the last alert

    def __post_init__(self):
        self.kind = self.kind or classify(self.error_type)

    @property
    def retryable(self) -> bool:
        """Only these kinds are retried by Airflow; a try counter means nothing for the others."""
        return self.kind in RETRYABLE_KINDS

    @property
    def runbook(self) -> str:
        """The kind's advice, then exactly what to clear once the cause is fixed."""
        advice = RUNBOOK[self.kind]
        if self.kind in ("gate_rejection", "lateness", "freshness", "monitoring"):
            return advice
        return f"{advice} {clear_advice(self.dag_id, self.task_id, self.run_id)}"

    @property
    def cause(self) -> str:
        """Same DAG, task, kind and message (numbers, dates and ids blanked) = same cause."""
        text = re.sub(r"[0-9a-f]{8,}", "#", self.summary[:300].lower())
        text = re.sub(r"\d+", "#", text)
        blob = "|".join([self.dag_id, self.task_id, self.kind, self.error_type, text])
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def subject(self) -> str:
        day = f" {self.partition_date}" if self.partition_date else ""
        return f"[pipeline] {self.kind.replace('_', ' ')}: {self.dag_id}.{self.task_id}{day} failed"

    def fields(self) -> dict[str, Any]:
        return {
            "dag_id": self.dag_id,
            "task_id": self.task_id,
            "run_id": self.run_id,
            "partition_date": self.partition_date,
            "try_number": self.try_number,
            "max_tries": self.max_tries,
            "kind": self.kind,
            "error_type": self.error_type,
            "error": self.summary,
            "log_url": self.log_url,
            "links": self.links,
            "runbook": self.runbook,
            "repeats_suppressed": self.repeats,
            "cause": self.cause,
            "at": self.at,
        }

    def text(self) -> str:
        lines = [
            self.subject(),
            "",
            f"DAG:       {self.dag_id}",
            f"Task:      {self.task_id}",
            f"Run id:    {self.run_id}",
            f"Partition: {self.partition_date or '-'}",
            *(
                [
                    f"Try:       {self.try_number} of {self.max_tries}"
                    if self.max_tries
                    else f"Try:       {self.try_number}"
                ]
                if self.retryable
                else []
            ),
            f"Kind:      {self.kind}",
            "",
            f"Error ({self.error_type}):",
            self.summary,
            "",
        ]
        if self.repeats:
            lines.append(f"The same failure happened {self.repeats} more time(s) since the last alert.")
        lines.append(f"Log:       {self.log_url or '-'}")
        lines += [f"{name}: {uri}" for name, uri in self.links.items()]
        lines += ["", f"What to do: {self.runbook}"]
        return "\n".join(lines)

    def html(self) -> str:
        rows = "".join(
            f"<tr><th align='left'>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
            for k, v in (
                ("DAG", self.dag_id),
                ("Task", self.task_id),
                ("Run id", self.run_id),
                ("Partition", self.partition_date or "-"),
                *([("Try", f"{self.try_number} of {self.max_tries}")] if self.retryable else []),
                ("Kind", self.kind),
            )
        )
        links = "".join(
            f"<li>{html.escape(n)}: <a href='{html.escape(u)}'>{html.escape(u)}</a></li>"
            for n, u in ({"task log": self.log_url or "-"} | self.links).items()
        )
        repeats = (
            f"<p>The same failure happened {self.repeats} more time(s) since the last alert.</p>"
            if self.repeats
            else ""
        )
        return (
            f"<h3>{html.escape(self.subject())}</h3><table>{rows}</table>"
            f"<p><b>{html.escape(self.error_type)}</b></p><pre style='white-space:pre-wrap'>{html.escape(self.summary)}</pre>{repeats}"
            f"<ul>{links}</ul><p><b>What to do:</b> {html.escape(self.runbook)}</p>"
        )

    def webhook(self) -> dict[str, Any]:
        """Slack-compatible (``text``), with every field under ``pipeline_alert``."""
        return {"text": self.text(), "pipeline_alert": {"status": "failed", **self.fields()}}


def resolved_message(
    dag_id: str, task_id: str, run_id: str, partition_date: str | None, closed: list[dict]
) -> dict[str, Any]:
    failures = sum(c["count"] for c in closed)
    text = (
        f"[pipeline] resolved: {dag_id}.{task_id}{' ' + partition_date if partition_date else ''} succeeded "
        f"(run {run_id}) after {failures} failure(s) since {min(c['first_at'] for c in closed)}"
    )
    return {
        "subject": text,
        "text": text,
        "webhook": {
            "text": text,
            "pipeline_alert": {
                "status": "resolved",
                "dag_id": dag_id,
                "task_id": task_id,
                "run_id": run_id,
                "partition_date": partition_date,
                "failures": failures,
                "causes": [c["cause"] for c in closed],
            },
        },
    }


class AlertLedger:
    """Open alerts per cause, in storage (shared by every worker)."""

    def __init__(self, storage: Storage, dedupe_minutes: float):
        self.storage = storage
        self.window = dt.timedelta(minutes=dedupe_minutes)

    @staticmethod
    def _dir(dag_id: str, task_id: str) -> str:
        return f"alerts/open/{dag_id}/{task_id}"

    def failure(self, alert: Alert, now: dt.datetime | None = None) -> bool:
        """Record a failure; True when it must be sent (first of its cause, or the window passed)."""
        now = now or dt.datetime.now(dt.UTC)
        key = f"{self._dir(alert.dag_id, alert.task_id)}/{alert.cause}.json"
        try:
            state = self.storage.read_json(key)
        except FileNotFoundError:
            state = None
        if state and now - dt.datetime.fromisoformat(state["sent_at"]) < self.window:
            state.update(count=state["count"] + 1, suppressed=state["suppressed"] + 1, last_at=now.isoformat())
            self.storage.write_json(key, state)
            return False
        alert.repeats = state["suppressed"] if state else 0
        self.storage.write_json(
            key,
            {
                "cause": alert.cause,
                "dag_id": alert.dag_id,
                "task_id": alert.task_id,
                "kind": alert.kind,
                "summary": alert.summary[:500],
                "first_at": state["first_at"] if state else now.isoformat(),
                "last_at": now.isoformat(),
                "sent_at": now.isoformat(),
                "count": (state["count"] if state else 0) + 1,
                "suppressed": 0,
            },
        )
        return True

    def resolve(self, dag_id: str, task_id: str) -> list[dict]:
        """Close every open cause of this task; returns them (empty: nothing to announce)."""
        closed = []
        base = self._dir(dag_id, task_id)
        for key in self.storage.list_keys(base):
            if not key.endswith(".json"):
                continue
            try:
                closed.append(self.storage.read_json(key))
            except FileNotFoundError:
                continue
            self.storage.delete(key)
        return closed


def to_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)
