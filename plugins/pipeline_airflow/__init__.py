"""Airflow-side glue shared by the DAG files (Airflow puts plugins/ on sys.path).

Everything here is about Airflow itself: which date a run is for, the S3
connection, and how pipeline errors map onto task states. No pipeline logic.
Imports of Airflow and of the pipeline happen inside functions, so DAG files that
import this module stay cheap to parse.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

log = logging.getLogger(__name__)

OWNER = "ml-platform"


def _default_args() -> dict:
    from pipeline_airflow.alerting import PipelineFailureNotifier, PipelineResolvedNotifier

    return {
        "owner": OWNER,
        "retries": 2,
        "retry_delay": timedelta(minutes=1),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=15),
        # On-call: one alert per cause after the last try, and "resolved" on the next success.
        "on_failure_callback": [PipelineFailureNotifier()],
        "on_success_callback": [PipelineResolvedNotifier()],
    }


DEFAULT_ARGS = _default_args()


def run_date(context: dict[str, Any], param: str = "date") -> str:
    """The partition date of this run: the `param` override, else the logical date,
    else (manual runs in Airflow 3 may have none) the date the run was queued for."""
    override = (context.get("params") or {}).get(param)
    if override:
        return dt.date.fromisoformat(str(override)[:10]).isoformat()
    logical = context.get("logical_date")
    if logical is not None:
        return logical.date().isoformat()
    return context["dag_run"].run_after.date().isoformat()


def _s3_conn_id() -> tuple[str | None, str]:
    """The Airflow connection holding storage's S3 endpoint and credentials (None: not needed, or
    boto3's own chain on purpose), and the URI that needs it."""
    from pipeline.core.settings import load_config

    config = load_config()
    remote = config.dvc.remote_url or ""
    if not (config.storage.root.startswith("s3://") or (config.dvc.enabled and remote.startswith("s3://"))):
        return None, ""
    where = config.storage.root if config.storage.root.startswith("s3://") else remote
    if config.storage.aws_conn_id is None:
        log.info("storage.aws_conn_id is null: boto3's standard chain (AWS_* variables, instance role) applies")
    return config.storage.aws_conn_id, where


def _options_from(conn_id: str, where: str, get_connection: Any) -> dict:
    from pipeline.core.errors import StorageCredentialsMissing

    try:
        conn = get_connection(conn_id)
    except Exception as exc:  # noqa: BLE001 - missing or unresolvable: either way, never fall back
        raise StorageCredentialsMissing(
            f"{where} needs the Airflow connection {conn_id!r} (storage.aws_conn_id), which could not be resolved "
            f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]}); add the connection, or set "
            "storage.aws_conn_id: null in params to use boto3's standard chain on purpose"
        ) from exc
    extra = conn.extra_dejson or {}
    return {
        "endpoint_url": extra.get("endpoint_url")
        or (extra.get("service_config", {}).get("s3", {}) or {}).get("endpoint_url"),
        "access_key_id": conn.login or extra.get("aws_access_key_id"),
        "secret_access_key": conn.password or extra.get("aws_secret_access_key"),
        "session_token": extra.get("aws_session_token"),
        "region": extra.get("region_name"),
    }


def s3_options() -> dict | None:
    """Endpoint and credentials from the Airflow connection named in params.yaml
    (storage.aws_conn_id), when storage or the DVC remote is on S3.

    Fails closed: with `aws_conn_id` set, a connection that does not exist or cannot be resolved
    is a StorageCredentialsMissing error naming it (retried like other storage errors), never a
    silent fall-back to whatever AWS_* variables or instance role the worker happens to have.
    boto3's own chain applies only when params say `storage.aws_conn_id: null`."""
    conn_id, where = _s3_conn_id()
    if conn_id is None:
        return None
    from airflow.sdk import BaseHook

    return _options_from(conn_id, where, BaseHook.get_connection)


async def s3_options_async() -> dict | None:
    """:func:`s3_options` for code running in the triggerer's event loop."""
    conn_id, where = _s3_conn_id()
    if conn_id is None:
        return None
    from airflow.sdk import BaseHook

    try:
        conn = await BaseHook.aget_connection(conn_id)
    except Exception as exc:  # noqa: BLE001 - reported with the connection's name by _options_from
        failure = exc

        def resolved(_conn_id: str):
            raise failure
    else:

        def resolved(_conn_id: str):
            return conn

    return _options_from(conn_id, where, resolved)


def signing_key_from_connection() -> None:
    """The model signing key from the Airflow connection `registry.signing_conn_id` (its password),
    when it exists and no key is set in the environment (pipeline/model/signing.py)."""
    from pipeline.core.keys import KEY_ENV

    if os.environ.get(KEY_ENV):
        return
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    from pipeline.core.settings import load_config

    try:
        conn = BaseHook.get_connection(load_config().registry.signing_conn_id)
    except AirflowNotFoundException:
        return
    if conn.password:
        os.environ[KEY_ENV] = conn.password


class _AirflowStats:
    """The pipeline's metrics through Airflow's metrics client ([metrics] statsd_on / otel_on)."""

    _ready = False

    def _stats(self):
        from airflow.sdk.observability import stats

        if not _AirflowStats._ready:  # dag.test() runs tasks without the task runner's initialisation
            from airflow.sdk.observability.metrics import stats_utils

            stats.initialize(factory=stats_utils.get_stats_factory(), export_legacy_names=False)
            _AirflowStats._ready = True
        return stats

    def incr(self, name, count=1, tags=None):
        self._stats().incr(name, count=count, tags=tags)

    def gauge(self, name, value, tags=None):
        self._stats().gauge(name, value, tags=tags)


def tasks_per_machine() -> int:
    """How many tasks this executor runs at once on one machine: a Celery worker's concurrency,
    the LocalExecutor's parallelism; the pipeline divides the cores by it (threads per task)."""
    from airflow.configuration import conf

    executor = conf.get("core", "executor", fallback="LocalExecutor") or ""
    if "Celery" in executor:
        return conf.getint("celery", "worker_concurrency", fallback=16)
    if "Local" in executor:
        return conf.getint("core", "parallelism", fallback=32)
    return 1


def run_step(name: str, *args: Any, **kwargs: Any) -> Any:
    """A task's one call into pipeline.steps: imported when the task runs (parsing the DAG file loads
    no stage), with the S3 settings of the Airflow connection, and bad data failing without retries."""
    from pipeline import steps

    with fail_fast_on_bad_data():
        return getattr(steps, name)(*args, s3_options=s3_options(), **kwargs)


def date_param(description: str) -> Any:
    """An optional YYYY-MM-DD param for manual runs (the date picker in the trigger form)."""
    from airflow.sdk import Param

    return Param(None, type=["null", "string"], format="date", description=description)


# Early, so backfills of historical batches are possible; catchup=False keeps the scheduler from
# creating those runs by itself.
EARLIEST_RUN = "2020-01-01"


def pipeline_dag(dag_id: str, tags: list[str], **settings: Any) -> Any:
    """`@dag` with the settings every pipeline DAG shares (start date, no catchup, one run at a time,
    retries on transient errors, the `ml` tag); `settings` add to or override them."""
    import pendulum
    from airflow.sdk import dag

    shared = {
        "start_date": pendulum.parse(EARLIEST_RUN, tz="UTC"),
        "catchup": False,
        "max_active_runs": 1,
        "default_args": DEFAULT_ARGS,
    }
    return dag(dag_id=dag_id, tags=["ml", *tags], **{**shared, **settings})


@contextlib.contextmanager
def fail_fast_on_bad_data() -> Iterator[None]:
    """Bad data or config will not fix itself on retry: fail the task at once, with the
    pipeline's message. Storage and other transient errors keep their retries."""
    from airflow.sdk.exceptions import AirflowFailException

    from pipeline.core.errors import NoRowsForDay, PipelineError
    from pipeline.ops import metrics

    metrics.install(_AirflowStats())
    os.environ.setdefault("PIPELINE_TASKS_PER_MACHINE", str(tasks_per_machine()))
    try:
        signing_key_from_connection()
        yield
    except PipelineError as exc:
        if isinstance(exc, NoRowsForDay):
            # Nothing delivered (yet) for this day, e.g. the first scheduled run after unpausing:
            # the run is skipped, not failed; lateness is the deadline check's job.
            skip(f"nothing to do: {exc}")
        links = getattr(exc, "links", None)
        if links:  # the task page's extra links (quarantine, failing Data Docs page) read these
            try:
                from airflow.sdk import get_current_context

                get_current_context()["ti"].xcom_push(key="pipeline_links", value=dict(links))
            except Exception:  # noqa: BLE001 - outside a task (tests, CLI): nothing to link
                pass
        raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc


def approval_required() -> bool:
    """`gate.require_approval` from params: the training DAG's shape depends on it (read at parse
    time; the config loader imports only yaml)."""
    from pipeline.core.settings import load_config

    return load_config().gate.require_approval


def champion_asset():
    """The champion of this params' model as an Airflow Asset: each promotion is an asset event
    carrying the version and its metrics, visible on the Assets page and the training DAG's runs."""
    from airflow.sdk import Asset

    from pipeline.core.settings import load_config

    return Asset(name=f"{load_config().model_name}_champion")


def announce_champion(context: dict[str, Any], asset, result: dict) -> None:
    """Attach the promoted version and metrics to the champion asset's event of this run."""
    context["outlet_events"][asset].extra = {
        "version": result.get("version"),
        "metrics": result.get("metrics") or {},
        "previous": result.get("previous"),
        "alias": result.get("alias"),
    }


def approval_operator(**kwargs):
    """Airflow's ApprovalOperator that also keeps the response (who, what, why) in XCom under
    `response`: on Reject the operator skips downstream before its return value is pushed."""
    from airflow.providers.standard.operators.hitl import ApprovalOperator

    class RecordedApprovalOperator(ApprovalOperator):
        def execute_complete(self, context, event):
            by = event.get("responded_by_user") or {}
            context["ti"].xcom_push(
                key="response",
                value={
                    "chosen_options": list(event.get("chosen_options") or []),
                    "params_input": dict(event.get("params_input") or {}),
                    "responded_by_user": dict(by) if isinstance(by, dict) else {"name": str(by)},
                },
            )
            return super().execute_complete(context, event)

    return RecordedApprovalOperator(**kwargs)


def actor(context: dict[str, Any]) -> str:
    """Who a run acts for: the user who triggered it, else the scheduler."""
    run = context.get("dag_run")
    return getattr(run, "triggering_user_name", None) or "airflow-scheduler"


def skip(message: str, context: dict[str, Any] | None = None) -> None:
    """Skip the task; with `context`, the reason is kept in XCom (`skip_reason`) for callbacks,
    which in Airflow 3.3.2 do not see the skip exception."""
    from airflow.sdk.exceptions import AirflowSkipException

    if context is not None:
        context["ti"].xcom_push(key="skip_reason", value=message)
    raise AirflowSkipException(message)
