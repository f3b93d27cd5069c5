"""The pipeline's steps as small JSON-in/JSON-out calls.

Airflow tasks, the CLI and the DVC stages all call these, so the three paths run
the same code. Each opens the settings and storage once (pipeline/opening.py: ``PIPELINE_PARAMS``
or the given file; S3 options from an Airflow connection can be passed in), calls one stage
function, and returns a small JSON-able dict.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from pipeline.opening import as_date, open_pipeline, params_schema, settings, storage_for  # noqa: F401 (the seam's API)
from pipeline.ops import progress
from pipeline.ops.threads import thread_limit

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- ingest/validate


def ingest(day: str | dt.date, params: str | None = None, s3_options: dict | None = None) -> dict:
    """The day's batch, plus the labels that arrive that day (of day - label delay)."""
    from pipeline.data.intake import ingest_with_labels

    return ingest_with_labels(*open_pipeline(params, s3_options), as_date(day))


def ingest_window(
    as_of: str | dt.date, params: str | None = None, s3_options: dict | None = None, force: bool = False
) -> dict:
    """Stage the deliveries and publish the labels of every day in the training window."""
    from pipeline.data.intake import ingest_window as run

    return run(*open_pipeline(params, s3_options), as_date(as_of), force)


def validate(
    day: str | dt.date, params: str | None = None, s3_options: dict | None = None, delivery_id: str | None = None
) -> dict:
    """Audit the day's staged delivery (the given one, or the latest) and publish or quarantine it."""
    from pipeline.data.intake import validate_delivery

    return validate_delivery(*open_pipeline(params, s3_options), as_date(day), delivery_id)


def validate_window(as_of: str | dt.date, params: str | None = None, s3_options: dict | None = None) -> dict:
    """Audit every staged delivery of the window; quarantine failures, then raise naming all of them."""
    from pipeline.data.intake import validate_window as run

    return run(*open_pipeline(params, s3_options), as_date(as_of))


# --------------------------------------------------------------------------- training


def snapshot(as_of: str | dt.date, params: str | None = None, s3_options: dict | None = None) -> dict:
    from pipeline.data.snapshot import build_snapshot

    config, storage = open_pipeline(params, s3_options)
    return build_snapshot(config, storage, as_date(as_of), s3_options)


def train(
    as_of: str | dt.date,
    snapshot_result: dict,
    reason: str = "scheduled",
    params: str | None = None,
    s3_options: dict | None = None,
    drift_decision: str | dt.date | None = None,
) -> dict:
    """Train a candidate; `drift_decision`: the date of the monitoring decision that triggered it."""
    from pipeline.model.train import train_candidate
    from pipeline.monitoring.monitor import retraining_trigger
    from pipeline.monitoring.profile import reference_for

    config, storage = open_pipeline(params, s3_options)
    trigger = retraining_trigger(config, storage, as_date(drift_decision)) if drift_decision else None
    with thread_limit(config) as threads:
        trained = train_candidate(
            config, storage, snapshot_result, as_date(as_of), reference_for, reason=reason, trigger=trigger
        )
        return {**trained, "threads_per_task": threads}


def evaluate(version: str, params: str | None = None, s3_options: dict | None = None) -> dict:
    from pipeline.model.evaluate import evaluate_version

    config, storage = open_pipeline(params, s3_options)
    with thread_limit(config):
        return evaluate_version(config, storage, version)


def gate(version: str, params: str | None = None, s3_options: dict | None = None) -> dict:
    from pipeline.model.gate import gate_version

    config, storage = open_pipeline(params, s3_options)
    return gate_version(config, storage, version)


def register(
    version: str,
    reason: str = "passed the evaluation gate",
    params: str | None = None,
    s3_options: dict | None = None,
    actor: str | None = None,
    run_id: str | None = None,
    approval: dict | None = None,
) -> dict:
    """Move `registry.promote_to` (champion, or challenger) to the version if its gate passed."""
    from pipeline.model import promotion

    return promotion.register(*open_pipeline(params, s3_options), version, reason, actor, run_id, approval)


def registry_action(
    action: str,
    version: str | None = None,
    reason: str = "",
    force: bool = False,
    params: str | None = None,
    s3_options: dict | None = None,
    actor: str | None = None,
    run_id: str | None = None,
) -> dict:
    """promote | rollback | set_challenger | clear_challenger | history | list | resign."""
    from pipeline.model import promotion

    return promotion.act(*open_pipeline(params, s3_options), action, version, reason, force, actor, run_id)


def record_approval(
    version: str,
    approval: dict | None,
    params: str | None = None,
    s3_options: dict | None = None,
    run_id: str | None = None,
) -> dict:
    """Record a human approval or rejection of a candidate (from the HITL task) in the history."""
    from pipeline.model import promotion

    return promotion.record_approval(*open_pipeline(params, s3_options), version, approval, run_id)


# --------------------------------------------------------------------------- scoring


def score(
    day: str | dt.date,
    params: str | None = None,
    s3_options: dict | None = None,
    version: str | None = None,
    reason: str = "",
    actor: str | None = None,
) -> dict:
    """Score the day: with the models that decided it before, else today's champion (and challenger);
    with `version`, that model (the previous decisions are kept as a revision)."""
    from pipeline.model.score import score_day

    config, storage = open_pipeline(params, s3_options)
    with thread_limit(config):
        return score_day(config, storage, as_date(day), version, reason, actor)


def plan_scoring(
    day: str | dt.date, params: str | None = None, s3_options: dict | None = None, version: str | None = None
) -> dict:
    """The day's row-group ranges and pinned model versions (batch_scoring maps one task per range)."""
    from pipeline.model.score import plan_scoring as plan

    config, storage = open_pipeline(params, s3_options)
    return plan(config, storage, as_date(day), version)


def scoring_jobs(
    day: str | dt.date, params: str | None = None, s3_options: dict | None = None, version: str | None = None
) -> list[dict]:
    """The plan as one job per range, for an orchestrator to map over."""
    from pipeline.model.score import jobs

    return jobs(plan_scoring(day, params, s3_options, version))


def score_range(plan: dict, rng: dict, params: str | None = None, s3_options: dict | None = None) -> dict:
    from pipeline.model.score import score_range as run

    config, storage = open_pipeline(params, s3_options)
    with thread_limit(config):
        return run(config, storage, plan, rng)


def publish_scoring(
    plan: dict,
    parts: list[dict],
    params: str | None = None,
    s3_options: dict | None = None,
    reason: str = "",
    actor: str | None = None,
) -> dict:
    from pipeline.model.score import publish_scoring as run

    config, storage = open_pipeline(params, s3_options)
    return run(config, storage, plan, list(parts), reason, actor)


def run_scoring(
    day: str | dt.date,
    params: str | None = None,
    s3_options: dict | None = None,
    version: str | None = None,
    reason: str = "",
) -> dict[str, Any]:
    """The batch_scoring DAG without an orchestrator: ingest -> validate -> score."""
    from pipeline.data.intake import ingest_with_labels, validate_delivery
    from pipeline.model.score import score_day

    config, storage = open_pipeline(params, s3_options)
    day = as_date(day)
    staged = ingest_with_labels(config, storage, day)
    validated = validate_delivery(config, storage, day, staged["delivery_id"])
    with thread_limit(config):
        scored = score_day(config, storage, day, version, reason)
    return {"ingest": staged, "validate": validated, "score": scored}


def run_training(
    as_of: str | dt.date, params: str | None = None, s3_options: dict | None = None, reason: str = "manual"
) -> dict[str, Any]:
    """The training pipeline without an orchestrator (CLI and DVC), on one settings and storage."""
    from pipeline.data import intake
    from pipeline.data.snapshot import build_snapshot
    from pipeline.model import promotion
    from pipeline.model.evaluate import evaluate_version
    from pipeline.model.gate import gate_version
    from pipeline.model.train import train_candidate
    from pipeline.monitoring.profile import reference_for

    config, storage = open_pipeline(params, s3_options)
    as_of = as_date(as_of)
    stage = "training pipeline"
    progress.start(stage, 7)
    progress.advance(stage, "ingest window")
    out: dict[str, Any] = {"ingest": intake.ingest_window(config, storage, as_of)}
    progress.advance(stage, "validate window")
    out["validate"] = intake.validate_window(config, storage, as_of)
    progress.advance(stage, "snapshot")
    out["snapshot"] = build_snapshot(config, storage, as_of, s3_options)
    progress.advance(stage, "train (cross-validation, fit)")
    with thread_limit(config) as threads:
        trained = train_candidate(config, storage, out["snapshot"], as_of, reference_for, reason=reason)
        out["train"] = {**trained, "threads_per_task": threads}
        version = trained["version"]
        progress.advance(stage, f"evaluate {version}")
        out["evaluate"] = evaluate_version(config, storage, version)
    progress.advance(stage, "gate")
    out["gate"] = gate_version(config, storage, version)
    progress.advance(stage, "register")
    out["register"] = promotion.register(config, storage, version, "passed the evaluation gate")
    progress.finish(stage)
    return out


# --------------------------------------------------------------------------- contract, quarantine


def contract_show(params: str | None = None, s3_options: dict | None = None, history: bool = False) -> dict:
    from pipeline.data import contract

    return contract.describe(*open_pipeline(params, s3_options), history)


def contract_update(
    reason: str,
    from_day: str | None = None,
    params: str | None = None,
    s3_options: dict | None = None,
    actor: str | None = None,
) -> dict:
    """A new contract version from the params (and, with `from_day`, that day's column types)."""
    from pipeline.data.expectations import update_contract

    return update_contract(*open_pipeline(params, s3_options), reason, as_date(from_day) if from_day else None, actor)


def status(today: str | dt.date | None = None, params: str | None = None, s3_options: dict | None = None) -> dict:
    """The freshness of every zone as of `today` (default: today, UTC)."""
    from pipeline.monitoring.freshness import status as run

    day = as_date(today) if today else dt.datetime.now(dt.UTC).date()
    return run(*open_pipeline(params, s3_options), day)


def claim_arrivals(params: str | None = None, s3_options: dict | None = None) -> dict:
    """Days whose delivery landed since the last call and has settled, claimed for scoring."""
    from pipeline.data.arrival import claim_arrivals as run

    return run(*open_pipeline(params, s3_options))


def check_freshness(today: str | dt.date, params: str | None = None, s3_options: dict | None = None) -> dict:
    """`status`, failing with StaleData (an alert of kind freshness) when a zone is late."""
    from pipeline.monitoring.freshness import require_fresh

    return require_fresh(*open_pipeline(params, s3_options), as_date(today))


def quarantine_list(
    dataset: str | None = None, since: str | None = None, params: str | None = None, s3_options: dict | None = None
) -> list[dict]:
    from pipeline.data.quarantine import list_quarantined

    config, storage = open_pipeline(params, s3_options)
    return list_quarantined(storage, dataset, as_date(since) if since else None)


def audit_list(
    since: str | None = None, kind: str | None = None, params: str | None = None, s3_options: dict | None = None
) -> list[dict]:
    from pipeline.ops.audit import list_records

    config, storage = open_pipeline(params, s3_options)
    return list_records(storage, as_date(since) if since else None, kind)


def audit_verify(params: str | None = None, s3_options: dict | None = None) -> dict:
    """Walk the audit trail's hash chain; raises naming the first record edited, removed or unlinked."""
    from pipeline.ops.audit import verify

    _, storage = open_pipeline(params, s3_options)
    return verify(storage)


def collect_garbage(
    older_than_hours: float | None = None,
    dry_run: bool = False,
    params: str | None = None,
    s3_options: dict | None = None,
) -> dict:
    """Remove what killed or failed writers left (staging, temp files, unreferenced objects)."""
    from pipeline.ops.maintenance import collect_garbage as run

    config, storage = open_pipeline(params, s3_options)
    return run(config, storage, older_than_hours, dry_run)


def dvc_restore(
    version: str | None = None, pull: bool = True, params: str | None = None, s3_options: dict | None = None
) -> dict:
    """Write the .dvc file a model's snapshot was recorded with into the project and `dvc pull` it."""
    from pipeline.data.snapshot import restore_snapshot
    from pipeline.model import registry

    config, storage = open_pipeline(params, s3_options)
    version = version or registry.champion_version(storage, config.model_name)
    return restore_snapshot(
        config, storage, registry.read_manifest(storage, config.model_name, version), pull=pull, s3_options=s3_options
    )


def gx_init(params: str | None = None, s3_options: dict | None = None) -> dict:
    """Write the suite and checkpoint of the current data contract into the Data Context."""
    from pipeline.data.expectations import init_context

    return init_context(*open_pipeline(params, s3_options))


# --------------------------------------------------------------------------- monitoring


def monitor_drift(
    as_of: str | dt.date, params: str | None = None, s3_options: dict | None = None, run_id: str | None = None
) -> dict:
    """Drift, quality and performance of the scored days before `as_of`, and the retraining
    decision (`retrain`, `reason`)."""
    from pipeline.monitoring.monitor import run_monitoring

    config, storage = open_pipeline(params, s3_options)
    with thread_limit(config):
        return run_monitoring(config, storage, as_of_date := as_date(as_of), run_id=run_id) | {
            "as_of": as_of_date.isoformat()
        }


def monitoring_findings(as_of: str | dt.date, params: str | None = None, s3_options: dict | None = None) -> dict:
    """Fails with MonitoringFindings (an alert of kind monitoring) when the run's decision holds findings
    on-call must act on (quality breaks, segment breaches, a retraining its limit suppressed)."""
    from pipeline.monitoring.findings import require_no_findings

    return require_no_findings(*open_pipeline(params, s3_options), as_date(as_of))


def simulate(
    days: list[str | dt.date],
    scenario: str,
    column: str | None = None,
    strength: float | None = None,
    break_kind: str = "null",
    params: str | None = None,
    s3_options: dict | None = None,
) -> dict:
    """Publish deliveries with an injected drift scenario for `days` (see monitoring.simulate)."""
    from pipeline.monitoring.simulate import simulate_deliveries

    config, storage = open_pipeline(params, s3_options)
    return simulate_deliveries(config, storage, [as_date(d) for d in days], scenario, column, strength, break_kind)


def false_alarms(weeks: int, params: str | None = None, s3_options: dict | None = None, seed: int = 0) -> dict:
    """How often the calibrated and the fixed-threshold policy retrain on weeks without drift."""
    from pipeline.monitoring.simulate import false_alarm_rates

    config, storage = open_pipeline(params, s3_options)
    return false_alarm_rates(config, storage, weeks, seed)


def explain(day: str | dt.date, row_id: str, params: str | None = None, s3_options: dict | None = None) -> dict:
    """What was decided for one row on one day, with which model, data and threshold, and why."""
    from pipeline.monitoring.explain import explain as run

    return run(*open_pipeline(params, s3_options), as_date(day), row_id)


def model_card(version: str | None = None, params: str | None = None, s3_options: dict | None = None) -> dict:
    """Write the model card of a version (default: the champion); returns where it is."""
    from pipeline.model import card, registry

    config, storage = open_pipeline(params, s3_options)
    return card.write_card(config, storage, version or registry.champion_version(storage, config.model_name))


def compare_shadow(
    since: str | dt.date | None = None, params: str | None = None, s3_options: dict | None = None
) -> dict:
    """Champion vs challenger on the shadow-scored days whose labels have arrived."""
    from pipeline.monitoring.shadow import compare_shadow as run

    config, storage = open_pipeline(params, s3_options)
    return run(config, storage, as_date(since) if since else None)
