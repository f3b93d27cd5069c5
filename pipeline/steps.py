"""The pipeline's steps as small JSON-in/JSON-out calls.

Airflow tasks, the CLI and the DVC stages all call these, so the three paths run
the same code. Each loads the config (``PIPELINE_PARAMS`` or the given file),
opens storage (S3 options from an Airflow connection can be passed in), calls
one function, and returns a small JSON-able dict.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from pipeline.core import layout
from pipeline.core.errors import ConfigError, PartitionNotFound
from pipeline.core.settings import PipelineConfig, load_config
from pipeline.core.storage import Storage, open_storage
from pipeline.ops import progress
from pipeline.ops.threads import thread_limit

log = logging.getLogger(__name__)


def open_pipeline(params: str | None = None, s3_options: dict | None = None) -> tuple[PipelineConfig, Storage]:
    config = settings(params)
    return config, storage_for(config, s3_options)


def settings(params: str | None = None) -> PipelineConfig:
    """The params, parsed, then checked by the stages that own them (column roles, metric and statistic
    names, windows): a mistake fails the step before it reads or writes anything."""
    from pipeline.data import contract
    from pipeline.model import checks
    from pipeline.monitoring import policy, stats

    config = load_config(params)
    problems = contract.check_settings(config) + checks.check_settings(config) + stats.check_settings(config.monitoring)
    if problems := problems + policy.check_settings(config.monitoring.policy):
        raise ConfigError("; ".join(problems))
    return config


def storage_for(config: PipelineConfig, s3_options: dict | None = None) -> Storage:
    """Storage at the configured root, with the configured S3 timeouts and retry budget."""
    st = config.storage
    budget = {
        "connect_timeout": st.connect_timeout_seconds,
        "read_timeout": st.read_timeout_seconds,
        "max_attempts": st.max_attempts,
    }
    return open_storage(
        st.root,
        {**budget, **(s3_options or {})},
        row_group_rows=st.row_group_rows,
        lease_seconds=st.publish_lease_seconds,
        wait_seconds=st.publish_wait_seconds,
    )


def as_date(value: str | dt.date) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value)[:10])
    except ValueError as exc:
        raise ValueError(f"not a date (YYYY-MM-DD): {value!r}") from exc


# --------------------------------------------------------------------------- ingest/validate


def ingest(day: str | dt.date, params: str | None = None, s3_options: dict | None = None) -> dict:
    """The day's batch, plus the labels that arrive that day (of day - label delay)."""
    from pipeline.core.errors import LabelsNotAvailable, NoRowsForDay
    from pipeline.data.ingest import ingest_day, ingest_labels

    config, storage = open_pipeline(params, s3_options)
    day = as_date(day)
    result = ingest_day(config, storage, day)
    labelled = day - dt.timedelta(days=config.dataset.batching.label_delay_days)
    try:
        result["labels"] = ingest_labels(config, storage, labelled, as_of=day)
    except (LabelsNotAvailable, NoRowsForDay) as exc:  # nothing arrives today; other errors do fail
        log.info("no labels arrive on %s: %s", day, exc)
        result["labels"] = None
    return result


def ingest_window(
    as_of: str | dt.date, params: str | None = None, s3_options: dict | None = None, force: bool = False
) -> dict:
    """Stage the deliveries and publish the labels of every day in the training window; days
    already published and validated are kept unless `force`."""
    from pipeline.core.errors import IngestError, NoRowsForDay, ValidationFailed
    from pipeline.data.ingest import ingest_day, ingest_labels
    from pipeline.data.snapshot import labelled_window
    from pipeline.data.validation import require_validated

    config, storage = open_pipeline(params, s3_options)
    as_of = as_date(as_of)
    days = labelled_window(config, as_of)
    staged, kept, rejected, rows = [], [], [], 0
    progress.start("ingest window", len(days))
    for i, day in enumerate(days, 1):
        progress.advance("ingest window", day.isoformat())
        labels = layout.labels_partition(config.dataset.name, day)
        if not force and storage.partition_exists(labels):
            try:
                require_validated(config, storage, day)
                kept.append(day.isoformat())
                continue
            except (ValidationFailed, PartitionNotFound):
                pass
        try:
            r = ingest_day(config, storage, day)
        except NoRowsForDay:
            raise
        except IngestError as exc:  # quarantined; the snapshot leaves the day out and says so
            log.error("ingest window: day %d/%d (%s) rejected: %s", i, len(days), day, exc)
            rejected.append({"day": day.isoformat(), "error": str(exc)})
            continue
        ingest_labels(config, storage, day, as_of=as_of)
        rows += r["rows"]
        staged.append(day.isoformat())
        log.info("ingest window: day %d/%d (%s) %d rows staged", i, len(days), day, r["rows"])
    progress.finish("ingest window")
    return {
        "as_of": as_of.isoformat(),
        "window": [days[0].isoformat(), days[-1].isoformat()],
        "staged_days": len(staged),
        "kept_days": len(kept),
        "rejected_days": rejected,
        "rows_staged": rows,
    }


def validate(
    day: str | dt.date, params: str | None = None, s3_options: dict | None = None, delivery_id: str | None = None
) -> dict:
    """Audit the day's staged delivery (the given one, or the latest) and publish or quarantine it.

    A task cleared after a fix still carries the delivery id its first run staged, which was judged
    since (quarantined or published): then the day's delivery is read again and that is audited."""
    from pipeline.data.ingest import ingest_day
    from pipeline.data.validation import validate_day

    config, storage = open_pipeline(params, s3_options)
    day = as_date(day)
    if delivery_id and not storage.partition_exists(layout.staging_delivery(config.dataset.name, day, delivery_id)):
        log.warning("%s: delivery %s was judged already; reading the day's delivery again", day, delivery_id)
        delivery_id = ingest_day(config, storage, day)["delivery_id"]
    return validate_day(config, storage, day, delivery_id)


def validate_window(as_of: str | dt.date, params: str | None = None, s3_options: dict | None = None) -> dict:
    """Audit every staged delivery of the window; quarantine failures, then raise naming all of them."""
    from pipeline.core.errors import ValidationFailed
    from pipeline.data.snapshot import labelled_window
    from pipeline.data.validation import data_docs_index, staged_deliveries, validate_days

    config, storage = open_pipeline(params, s3_options)
    as_of = as_date(as_of)
    window = labelled_window(config, as_of)
    todo = [d for d in window if staged_deliveries(storage, config.dataset.name, d)]
    log.info("validating %d staged day(s) of the window (%d kept)", len(todo), len(window) - len(todo))
    passed, failures = validate_days(config, storage, todo)
    if failures and not passed and len(failures) == len(window):
        raise ValidationFailed(
            "every day of the window failed validation:\n" + "\n".join(f["message"] for f in failures)
        )
    for failure in failures:  # quarantined: the snapshot leaves these days out and records why
        log.error("window day quarantined: %s", failure["message"])
    return {
        "as_of": as_of.isoformat(),
        "validated_days": len(passed),
        "already_valid_days": len(window) - len(todo),
        "quarantined_days": len(failures),
        "data_docs": data_docs_index(config),
    }


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
) -> dict:
    from pipeline.model.train import train_candidate
    from pipeline.monitoring.profile import reference_for

    config, storage = open_pipeline(params, s3_options)
    with thread_limit(config) as threads:
        return {
            **train_candidate(config, storage, snapshot_result, as_date(as_of), reference_for, reason=reason),
            "threads_per_task": threads,
        }


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
) -> dict:
    """Move `registry.promote_to` (champion, or challenger for shadow/canary first) to the
    version if its gate passed; otherwise say why not (and do nothing)."""
    from pipeline.model import registry

    config, storage = open_pipeline(params, s3_options)
    decision = storage.read_json(f"{layout.model_version(config.model_name, version)}/{registry.GATE}")
    current = registry.get_alias(storage, config.model_name)
    if not decision["passed"]:
        return {
            "version": version,
            "promoted": False,
            "reasons": decision["reasons"],
            "champion": current["version"] if current else None,
        }
    alias = config.registry.promote_to
    record = registry.promote(storage, config.model_name, version, reason, alias=alias, actor=actor, run_id=run_id)
    return {
        "version": version,
        "promoted": True,
        "alias": alias,
        "champion": registry.champion_version(storage, config.model_name),
        "previous": record["previous_version"],
    }


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
    """promote | rollback | set_challenger | clear_challenger | history | list, as the CLI and
    the model_registry DAG offer them. Every move needs a reason and is recorded."""
    from pipeline.model import registry

    config, storage = open_pipeline(params, s3_options)
    model = config.model_name
    if action in ("promote", "rollback", "set_challenger", "clear_challenger") and not reason.strip():
        raise registry.RegistryError(f"{action} needs a reason (it is recorded in the history)")
    if action == "promote":
        if not version:
            raise registry.RegistryError("promote needs a version")
        record = registry.promote(storage, model, version, reason, actor=actor, run_id=run_id, force=force)
    elif action == "rollback":
        record = registry.rollback(storage, model, reason, to=version, actor=actor, run_id=run_id)
    elif action == "set_challenger":
        if not version:
            raise registry.RegistryError("set_challenger needs a version")
        record = registry.promote(
            storage, model, version, reason, alias=registry.CHALLENGER, actor=actor, run_id=run_id, force=force
        )
    elif action == "clear_challenger":
        record = registry.move_alias(storage, model, registry.CHALLENGER, None, reason, "clear", actor, run_id)
    elif action == "history":
        return {"model": model, "history": registry.history(storage, model)}
    elif action == "resign":  # key rotation (pipeline/model/signing.py)
        return {"model": model, "versions": registry.resign(storage, model)}
    elif action == "list":
        return {
            "model": model,
            "champion": registry.get_alias(storage, model),
            "challenger": registry.get_alias(storage, model, registry.CHALLENGER),
            "versions": [
                {k: m.get(k) for k in ("version", "status", "created_at", "trained_as_of", "reason")}
                | {
                    "roc_auc": (m.get("metrics") or {}).get("roc_auc"),
                    "gate_passed": (m.get("gate") or {}).get("passed"),
                }
                for m in registry.list_versions(storage, model)
            ],
        }
    else:
        raise registry.RegistryError(f"unknown registry action {action!r}")
    return {
        "action": action,
        "alias": record.get("alias"),
        "version": record.get("version"),
        "previous_version": record.get("previous_version"),
        "reason": reason,
        "champion": (registry.get_alias(storage, model) or {}).get("version"),
    }


def record_approval(
    version: str,
    approval: dict | None,
    params: str | None = None,
    s3_options: dict | None = None,
    run_id: str | None = None,
) -> dict:
    """Record a human approval or rejection of a candidate (from the HITL task) in the history."""
    from pipeline.model import registry

    config, storage = open_pipeline(params, s3_options)
    approval = approval or {}
    chosen = (approval.get("chosen_options") or [None])[0]
    by = approval.get("responded_by_user") or approval.get("responded_by") or {}
    event = {
        "action": "approval",
        "version": version,
        "outcome": "approved" if chosen == "Approve" else "rejected",
        "actor": by.get("name") if isinstance(by, dict) else str(by),
        "reason": (approval.get("params_input") or {}).get("reason") or "",
        "run_id": run_id,
    }
    registry.record_event(storage, config.model_name, event)
    return event


# --------------------------------------------------------------------------- scoring


def score(
    day: str | dt.date, params: str | None = None, s3_options: dict | None = None, version: str | None = None
) -> dict:
    from pipeline.model.score import score_day

    config, storage = open_pipeline(params, s3_options)
    with thread_limit(config):
        return score_day(config, storage, as_date(day), version=version)


def plan_scoring(
    day: str | dt.date, params: str | None = None, s3_options: dict | None = None, version: str | None = None
) -> dict:
    """The day's row-group ranges and pinned model versions (batch_scoring maps one task per range)."""
    from pipeline.model.score import plan_scoring as plan

    config, storage = open_pipeline(params, s3_options)
    return plan(config, storage, as_date(day), version)


def scoring_jobs(day: str | dt.date, params: str | None = None, s3_options: dict | None = None) -> list[dict]:
    """The plan as one job per range, for an orchestrator to map over."""
    plan = plan_scoring(day, params, s3_options)
    return [
        {
            "plan": plan,
            "range": rng,
            "label": f"part {rng['part']}: {rng['file']} row groups {rng['row_groups'][0]}-{rng['row_groups'][1] - 1}",
        }
        for rng in plan["ranges"]
    ]


def score_range(plan: dict, rng: dict, params: str | None = None, s3_options: dict | None = None) -> dict:
    from pipeline.model.score import score_range as run

    config, storage = open_pipeline(params, s3_options)
    with thread_limit(config):
        return run(config, storage, plan, rng)


def publish_scoring(plan: dict, parts: list[dict], params: str | None = None, s3_options: dict | None = None) -> dict:
    from pipeline.model.score import publish_scoring as run

    config, storage = open_pipeline(params, s3_options)
    return run(config, storage, plan, list(parts))


def run_scoring(day: str | dt.date, params: str | None = None, s3_options: dict | None = None) -> dict[str, Any]:
    """The batch_scoring DAG without an orchestrator: ingest -> validate -> score."""
    staged = ingest(day, params, s3_options)
    validated = validate(day, params, s3_options, delivery_id=staged["delivery_id"])
    return {"ingest": staged, "validate": validated, "score": score(day, params, s3_options)}


def run_training(
    as_of: str | dt.date, params: str | None = None, s3_options: dict | None = None, reason: str = "manual"
) -> dict[str, Any]:
    """The training pipeline without an orchestrator (CLI and DVC)."""
    stage = "training pipeline"
    progress.start(stage, 7)
    progress.advance(stage, "ingest window")
    out: dict[str, Any] = {"ingest": ingest_window(as_of, params, s3_options)}
    progress.advance(stage, "validate window")
    out["validate"] = validate_window(as_of, params, s3_options)
    progress.advance(stage, "snapshot")
    out["snapshot"] = snapshot(as_of, params, s3_options)
    progress.advance(stage, "train (cross-validation, fit)")
    out["train"] = train(as_of, out["snapshot"], reason, params, s3_options)
    version = out["train"]["version"]
    progress.advance(stage, f"evaluate {version}")
    out["evaluate"] = evaluate(version, params, s3_options)
    progress.advance(stage, "gate")
    out["gate"] = gate(version, params, s3_options)
    progress.advance(stage, "register")
    out["register"] = register(version, params=params, s3_options=s3_options)
    progress.finish(stage)
    return out


# --------------------------------------------------------------------------- contract, quarantine


def contract_show(params: str | None = None, s3_options: dict | None = None, history: bool = False) -> dict:
    from pipeline.data import contract as contracts

    config, storage = open_pipeline(params, s3_options)
    if history:
        return {
            "dataset": config.dataset.name,
            "versions": [
                {**c.summary(), "created_at": c.created_at, "reason": c.reason, "actor": c.actor}
                for c in contracts.history(config, storage)
            ],
        }
    current = contracts.current(config, storage)
    if current is None:
        return {
            "dataset": config.dataset.name,
            "contract": None,
            "hint": "no contract yet: the first ingest resolves one from params and the data",
        }
    diff = contracts.differences(current.terms, contracts.terms_from_params(config))
    return {"contract": current.to_dict(), "params_differ": diff}


def contract_update(
    reason: str,
    from_day: str | None = None,
    params: str | None = None,
    s3_options: dict | None = None,
    actor: str | None = None,
) -> dict:
    """A new contract version from the params (and, with `from_day`, that day's column types)."""
    from pipeline.data import contract as contracts
    from pipeline.data.delivery import read_delivery, resolution_sample
    from pipeline.data.validation import write_suite

    config, storage = open_pipeline(params, s3_options)
    sample = None
    if from_day:
        sample = resolution_sample(config, storage, read_delivery(config, storage, as_date(from_day)))
    result = contracts.update(config, storage, reason, sample, actor)
    if result["changed"]:  # the committed suite follows the contract at once (validation would re-sync it)
        write_suite(config, contracts.require(config, storage))
    return result


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
    from pipeline.data import contract as contracts
    from pipeline.data.validation import checkpoint_name, suite_name, write_suite

    config, storage = open_pipeline(params, s3_options)
    contract = contracts.require(config, storage)
    write_suite(config, contract)
    return {
        "gx_root": config.validation.gx_root,
        "suite": suite_name(config),
        "checkpoint": checkpoint_name(config),
        "contract": contract.summary(),
    }


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


def compare_shadow(
    since: str | dt.date | None = None, params: str | None = None, s3_options: dict | None = None
) -> dict:
    """Champion vs challenger on the shadow-scored days whose labels have arrived."""
    from pipeline.monitoring.shadow import compare_shadow as run

    config, storage = open_pipeline(params, s3_options)
    return run(config, storage, as_date(since) if since else None)
