"""On-call alerts through Airflow notifiers (attached to every task by DEFAULT_ARGS).

* :class:`PipelineFailureNotifier` (``on_failure_callback``: the task failed after its retries,
  or at once for bad data/config) builds the alert (pipeline.ops.alerts), lets the ledger drop
  repeats of the same cause, then sends it by email (the SMTP provider's ``SmtpNotifier``) and to
  a webhook (Slack-compatible JSON), each through an Airflow connection; audits it.
* :class:`PipelineResolvedNotifier` (``on_success_callback``) sends one short "resolved" when a
  task with open alerts succeeds.
* :class:`GateRejectionNotifier` (``on_skipped_callback`` of ``register``) tells on-call that a
  candidate was rejected (the run itself succeeds).

Alerting never fails a task: a channel that cannot be reached is logged.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from typing import Any

from airflow.sdk import BaseNotifier

log = logging.getLogger(__name__)


def _pipeline():
    from pipeline.steps import open_pipeline
    from pipeline_airflow import s3_options

    return open_pipeline(s3_options=s3_options())


def _partition_date(context: dict) -> str | None:
    from pipeline_airflow import run_date

    params = context.get("params") or {}
    for name in ("date", "as_of"):
        if params.get(name):
            return run_date(context, name)
    try:
        return run_date(context)
    except Exception:  # noqa: BLE001 - a run without any date
        return None


def _root_cause(exc: BaseException | None) -> BaseException | None:
    # fail_fast_on_bad_data wraps pipeline errors in AirflowFailException; the cause has the facts.
    while exc is not None and type(exc).__name__ in ("AirflowFailException",) and exc.__cause__ is not None:
        exc = exc.__cause__
    return exc


def _log_url(ti, config) -> str | None:
    # Built from alerts.ui_base_url (where people open the UI), not the task's own log_url, which
    # carries the API server's internal address (localhost) in a mail.
    base = config.alerts.ui_base_url.rstrip("/")
    return f"{base}/dags/{ti.dag_id}/runs/{ti.run_id}/tasks/{ti.task_id}?try_number={getattr(ti, 'try_number', '')}"


def absolute_url(uri: str, config) -> str:
    """What a mail client can open: a local artefact as an http(s) URL of the plugin's artefact app on
    the API server (alerts.ui_base_url, its public address); other URIs (s3://, http) as they are."""
    if not uri or "://" in uri:
        return uri
    from pipeline_airflow.artefacts_app import url_for

    return config.alerts.ui_base_url.rstrip("/") + url_for(uri)


def alert_from_context(context: dict, config, kind: str | None = None, summary: str | None = None):
    from pipeline.ops.alerts import Alert

    ti = context["ti"]
    exc = _root_cause(context.get("exception"))
    task = context.get("task")
    retries = getattr(task, "retries", None)
    text = summary if summary is not None else (str(exc) if exc is not None else "failed (no exception recorded)")
    return Alert(
        dag_id=ti.dag_id,
        task_id=ti.task_id,
        run_id=ti.run_id,
        partition_date=_partition_date(context),
        try_number=getattr(ti, "try_number", None),
        max_tries=(retries + 1) if isinstance(retries, int) else None,
        error_type=type(exc).__name__ if exc is not None else (kind or "Unknown"),
        summary=text[:4000],
        kind=kind or "",
        links={name: absolute_url(uri, config) for name, uri in (getattr(exc, "links", {}) or {}).items()},
        log_url=_log_url(ti, config),
    )


def _connection(conn_id: str):
    from airflow.sdk import BaseHook

    try:
        return BaseHook.get_connection(conn_id)
    except Exception:  # noqa: BLE001 - not configured: this channel is off
        return None


def _raw(text: str) -> str:
    # The SMTP notifier renders its fields with Jinja; alert text is data, not a template.
    return "{% raw %}" + text + "{% endraw %}"


class EmailChannel:
    """E-mail through Airflow's SMTP notifier, to `alerts.email_to` via the `alerts.smtp_conn_id` connection."""

    name = "email"

    def send(self, alerts, context: dict, subject: str, html_body: str, webhook: dict[str, Any]) -> bool:
        if not alerts.email_to or _connection(alerts.smtp_conn_id) is None:
            return False
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        SmtpNotifier(
            to=list(alerts.email_to),
            from_email=alerts.email_from,
            subject=_raw(subject),
            html_content=_raw(html_body),
            smtp_conn_id=alerts.smtp_conn_id,
        )(context)
        return True


class WebhookChannel:
    """Slack-compatible JSON POSTed to the `alerts.webhook_conn_id` connection's URL."""

    name = "webhook"

    def send(self, alerts, context: dict, subject: str, html_body: str, webhook: dict[str, Any]) -> bool:
        conn = _connection(alerts.webhook_conn_id)
        if conn is None:
            return False
        url = conn.get_uri() if not conn.host or "://" not in conn.host else conn.host
        if conn.host and "://" not in conn.host:
            scheme = conn.schema if conn.schema in ("http", "https") else "http"
            path = (conn.extra_dejson or {}).get("endpoint", "")
            url = f"{scheme}://{conn.host}{f':{conn.port}' if conn.port else ''}/{path.lstrip('/')}"
        request = urllib.request.Request(
            url, data=json.dumps(webhook, default=str).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()
        return True


# Every alert goes out by each channel whose connection exists. A new channel is one class here and
# one entry in this list.
CHANNELS: list[EmailChannel | WebhookChannel] = [EmailChannel(), WebhookChannel()]


def send(config, context: dict, subject: str, html_body: str, webhook: dict[str, Any]) -> list[str]:
    """Send by every configured channel; returns the channels that accepted it."""
    sent = []
    for channel in CHANNELS:
        try:
            if channel.send(config.alerts, context, subject, html_body, webhook):
                sent.append(channel.name)
        except Exception as exc:  # noqa: BLE001 - alerting must not fail the task
            log.error("alert by %s failed: %s", channel.name, exc)
    return sent


class PipelineFailureNotifier(BaseNotifier):
    """A task failed for good: tell on-call once per cause."""

    def __init__(self, kind: str | None = None):
        super().__init__()
        self.kind = kind

    def notify(self, context):
        try:
            self._notify(context)
        except Exception as exc:  # noqa: BLE001 - never turn a failure into a different one
            log.exception("pipeline alert could not be prepared: %s", exc)

    def _notify(self, context, summary: str | None = None):
        from pipeline.ops import audit
        from pipeline.ops.alerts import AlertLedger

        config, storage = _pipeline()
        alert = alert_from_context(context, config, self.kind, summary)
        if not AlertLedger(storage, config.alerts.dedupe_minutes).failure(alert):
            log.warning(
                "alert suppressed (same cause as an alert sent less than %s min ago): %s",
                config.alerts.dedupe_minutes,
                alert.subject(),
            )
            return
        channels = send(config, context, alert.subject(), alert.html(), alert.webhook())
        log.error("ALERT %s -> %s\n%s", alert.subject(), channels or "log only", alert.text())
        details = {k: v for k, v in alert.fields().items() if k not in ("run_id", "kind", "at", "error")}
        audit.record(
            storage,
            "alert",
            alert.subject(),
            why=alert.summary[:1000],
            run_id=alert.run_id,
            actor="airflow",
            channels=channels,
            failure_kind=alert.kind,
            **details,
        )


class PipelineResolvedNotifier(BaseNotifier):
    """A task with open alerts succeeded: one short "resolved"."""

    def notify(self, context):
        try:
            from pipeline.ops import audit
            from pipeline.ops.alerts import AlertLedger, resolved_message

            config, storage = _pipeline()
            ti = context["ti"]
            closed = AlertLedger(storage, config.alerts.dedupe_minutes).resolve(ti.dag_id, ti.task_id)
            if not closed:
                return
            msg = resolved_message(ti.dag_id, ti.task_id, ti.run_id, _partition_date(context), closed)
            channels = send(config, context, msg["subject"], f"<p>{msg['text']}</p>", msg["webhook"])
            log.warning("RESOLVED %s -> %s", msg["subject"], channels or "log only")
            audit.record(
                storage,
                "alert_resolved",
                msg["subject"],
                run_id=ti.run_id,
                actor="airflow",
                channels=channels,
                dag_id=ti.dag_id,
                task_id=ti.task_id,
            )
        except Exception as exc:  # noqa: BLE001
            log.exception("resolved notice failed: %s", exc)


class GateRejectionNotifier(PipelineFailureNotifier):
    """`register` skipped because the gate rejected the candidate (not a failure of the run)."""

    def __init__(self):
        super().__init__(kind="gate_rejection")

    def notify(self, context):
        ti = context["ti"]
        try:
            text = ti.xcom_pull(task_ids=ti.task_id, key="skip_reason") or ""
        except Exception:  # noqa: BLE001
            text = ""
        if "gate rejected" not in text.lower():
            return  # skipped for another reason (e.g. approval rejected): not an alert
        try:
            self._notify(context, summary=text)
        except Exception as exc2:  # noqa: BLE001
            log.exception("gate rejection alert failed: %s", exc2)


def _deadline_sync(context: dict, what: str) -> None:
    from pipeline.ops import audit
    from pipeline.ops.alerts import Alert

    run = context.get("dag_run") or {}
    if run.get("run_type") not in (None, "scheduled"):
        log.info(
            "deadline passed for %s run %s: not a scheduled run, no lateness alert",
            run.get("dag_id"),
            run.get("run_id"),
        )
        return
    config, storage = _pipeline()
    deadline = (context.get("deadline") or {}).get("deadline_time")
    logical = run.get("logical_date")
    alert = Alert(
        dag_id=run.get("dag_id", "?"),
        task_id="(run)",
        run_id=run.get("run_id", "?"),
        partition_date=str(logical)[:10] if logical else None,
        try_number=None,
        max_tries=None,
        error_type="DeadlineMissed",
        kind="lateness",
        summary=f"{what} not finished by its deadline {deadline} (state now: {run.get('state')})",
        log_url=f"{config.alerts.ui_base_url.rstrip('/')}/dags/{run.get('dag_id')}/runs/{run.get('run_id')}",
    )
    channels = send(
        config,
        {"dag_run": run},
        alert.subject().replace("failed", "is late"),
        alert.html(),
        alert.webhook() | {"text": alert.text().replace("failed", "is late")},
    )
    log.error("LATE %s -> %s", alert.subject(), channels or "log only")
    audit.record(
        storage,
        "alert",
        alert.subject().replace("failed", "is late"),
        why=alert.summary,
        run_id=alert.run_id,
        actor="airflow",
        channels=channels,
        failure_kind="lateness",
        dag_id=alert.dag_id,
        partition_date=alert.partition_date,
    )


async def deadline_missed(context: dict | None = None, what: str = "the run", **_: Any) -> None:
    """Deadline Alert callback (runs in the triggerer): a scheduled run is late."""
    import asyncio

    await asyncio.to_thread(_deadline_sync, context or {}, what)


def scoring_deadline():
    """The batch_scoring DAG's DeadlineAlert from `alerts.scoring_deadline_hours` (None: no deadline)."""
    from datetime import timedelta

    from airflow.sdk.definitions.callback import AsyncCallback
    from airflow.sdk.definitions.deadline import DeadlineAlert, DeadlineReference

    from pipeline.core.settings import load_config

    hours = load_config().alerts.scoring_deadline_hours
    if hours is None:
        return None
    return DeadlineAlert(
        reference=DeadlineReference.DAGRUN_LOGICAL_DATE,
        interval=timedelta(hours=hours),
        callback=AsyncCallback(deadline_missed, kwargs={"what": "scoring of the day"}),
        name="scoring_done_in_time",
    )
