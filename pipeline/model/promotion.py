"""Promotion decisions on the registry: register a candidate whose gate passed, the operator's
actions (promote, rollback, challenger, history, list, resign), and human approvals (the Airflow HITL
response, parsed here once)."""

from __future__ import annotations

from typing import Any

from pipeline.core import layout
from pipeline.core.errors import RegistryError
from pipeline.core.settings import PipelineConfig
from pipeline.core.storage import Storage
from pipeline.model import card, registry

MOVES = ("promote", "rollback", "set_challenger", "clear_challenger")


def parse_approval(response: dict | None) -> dict[str, Any]:
    """Outcome, who and why of an approval response ({chosen_options, responded_by_user, params_input})."""
    response = response or {}
    chosen = (response.get("chosen_options") or [None])[0]
    by = response.get("responded_by_user") or response.get("responded_by") or {}
    return {
        "outcome": "approved" if chosen == "Approve" else "rejected",
        "actor": (by.get("name") if isinstance(by, dict) else str(by)) or None,
        "reason": (response.get("params_input") or {}).get("reason") or "",
    }


def register(
    config: PipelineConfig,
    storage: Storage,
    version: str,
    reason: str,
    actor: str | None = None,
    run_id: str | None = None,
    approval: dict | None = None,
) -> dict:
    """Move `registry.promote_to` to the version if its gate passed; otherwise say why not (and do
    nothing). With an approval, the person who approved is the actor."""
    model = config.model_name
    decision = storage.read_json(f"{layout.model_version(model, version)}/{registry.GATE}")
    current = registry.get_alias(storage, model)
    if not decision["passed"]:
        champion = current["version"] if current else None
        return {"version": version, "promoted": False, "reasons": decision["reasons"], "champion": champion}
    actor = (parse_approval(approval)["actor"] if approval else None) or actor
    alias = config.registry.promote_to
    record = registry.promote(storage, model, version, reason, alias=alias, actor=actor, run_id=run_id)
    card.refresh(config, storage, version)
    card.refresh(config, storage, record.get("previous_version"))
    return {
        "version": version,
        "promoted": True,
        "alias": alias,
        "champion": registry.champion_version(storage, model),
        "previous": record["previous_version"],
        "model_card": storage.uri(f"{layout.model_version(model, version)}/{card.HTML}"),
    }


def _summary(storage: Storage, model: str, m: dict) -> dict:
    return {k: m.get(k) for k in ("version", "status", "created_at", "trained_as_of", "reason")} | {
        "roc_auc": (m.get("metrics") or {}).get("roc_auc"),
        "gate_passed": (m.get("gate") or {}).get("passed"),
        "model_card": storage.uri(f"{layout.model_version(model, m['version'])}/{card.HTML}"),
    }


def act(
    config: PipelineConfig,
    storage: Storage,
    action: str,
    version: str | None = None,
    reason: str = "",
    force: bool = False,
    actor: str | None = None,
    run_id: str | None = None,
) -> dict:
    """promote | rollback | set_challenger | clear_challenger | history | list | resign, as the CLI and
    the model_registry DAG offer them. Every move needs a reason and is recorded."""
    model = config.model_name
    if action in MOVES and not reason.strip():
        raise RegistryError(f"{action} needs a reason (it is recorded in the history)")
    if action in ("promote", "set_challenger") and not version:
        raise RegistryError(f"{action} needs a version")
    if action == "promote":
        record = registry.promote(storage, model, str(version), reason, actor=actor, run_id=run_id, force=force)
    elif action == "rollback":
        record = registry.rollback(storage, model, reason, to=version, actor=actor, run_id=run_id)
    elif action == "set_challenger":
        challenger = registry.CHALLENGER
        record = registry.promote(storage, model, str(version), reason, challenger, actor, run_id, force=force)
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
            "versions": [_summary(storage, model, m) for m in registry.list_versions(storage, model)],
        }
    else:
        raise RegistryError(f"unknown registry action {action!r}")
    for touched in dict.fromkeys([record.get("version"), record.get("previous_version")]):
        card.refresh(config, storage, touched)
    return {
        "action": action,
        "alias": record.get("alias"),
        "version": record.get("version"),
        "previous_version": record.get("previous_version"),
        "reason": reason,
        "champion": (registry.get_alias(storage, model) or {}).get("version"),
    }


def record_approval(
    config: PipelineConfig, storage: Storage, version: str, approval: dict | None, run_id: str | None = None
) -> dict:
    """Record a human approval or rejection of a candidate in the model's history."""
    event = {"action": "approval", "version": version, **parse_approval(approval), "run_id": run_id}
    registry.record_event(storage, config.model_name, event)
    card.refresh(config, storage, version)
    return event
