"""The promotion gate: a list of named checks over the evaluation, each returning its reasons to
refuse. A candidate passes when no check has a reason. Adding a check is one entry in CHECKS."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from pipeline.core import layout
from pipeline.core.settings import PipelineConfig
from pipeline.core.storage import Storage
from pipeline.model import card, registry
from pipeline.model.fairness import fairness_breaches
from pipeline.model.report import FIGURES, REPORT, render_report

EVALUATION = "evaluation.json"


def gate_decision(metrics: dict, min_metrics: dict, max_metrics: dict) -> dict:
    """Pass only if every floor and ceiling holds; each breach is a reason."""
    reasons = []
    for name, floor in sorted(min_metrics.items()):
        if metrics[name] < floor:
            reasons.append(f"{name} {metrics[name]:.4f} is below the floor {floor}")
    for name, ceiling in sorted(max_metrics.items()):
        if metrics[name] > ceiling:
            reasons.append(f"{name} {metrics[name]:.4f} is above the ceiling {ceiling}")
    return {
        "passed": not reasons,
        "reasons": reasons,
        "min_metrics": dict(min_metrics),
        "max_metrics": dict(max_metrics),
    }


def comparison_reasons(comparison: dict, gate) -> list[str]:
    """Non-regression against the champion: the interval's lower bound and the cost."""
    if not comparison.get("possible"):
        return []
    reasons = []
    boot = comparison["bootstrap"]
    low = boot["difference_ci"][0]
    if low < gate.min_improvement:
        reasons.append(
            f"{boot['metric']} vs champion {comparison['champion_version']}: difference "
            f"{boot['difference']:+.4f}, {boot['confidence']:.0%} interval [{low:+.4f}, "
            f"{boot['difference_ci'][1]:+.4f}]; its lower bound is below the required {gate.min_improvement:+}"
        )
    cand, champ = comparison.get("candidate_cost_per_1000"), comparison.get("champion_cost_per_1000")
    if cand is not None and champ is not None and cand > champ + gate.max_cost_increase:
        reasons.append(
            f"expected cost {cand:.1f} per 1,000 decisions is above the champion's {champ:.1f}"
            + (f" + {gate.max_cost_increase}" if gate.max_cost_increase else "")
        )
    return reasons


def _floors(config: PipelineConfig, version: str, evaluation: dict) -> list[str]:
    return gate_decision(evaluation["metrics"], config.gate.min_metrics, config.gate.max_metrics)["reasons"]


def _not_the_champion(config: PipelineConfig, version: str, evaluation: dict) -> list[str]:
    if evaluation["comparison"].get("same_version"):
        return [f"{version} is already the champion: a version is not promoted over itself"]
    return []


def _fairness(config: PipelineConfig, version: str, evaluation: dict) -> list[str]:
    return fairness_breaches(evaluation["fairness"], config.fairness)


def _cost_ceiling(config: PipelineConfig, version: str, evaluation: dict) -> list[str]:
    cost, ceiling = evaluation["metrics"].get("cost_per_1000", 0), config.gate.max_cost_per_1000
    if config.cost and ceiling is not None and cost > ceiling:
        return [f"expected cost {cost:.1f} per 1,000 decisions is above the ceiling {ceiling}"]
    return []


def _non_regression(config: PipelineConfig, version: str, evaluation: dict) -> list[str]:
    return comparison_reasons(evaluation["comparison"], config.gate)


# name -> check(config, version, evaluation) -> reasons to refuse, in the order they are reported.
CHECKS: list[tuple[str, Callable[[PipelineConfig, str, dict], list[str]]]] = [
    ("metric floors and ceilings", _floors),
    ("not the champion itself", _not_the_champion),
    ("fairness limits", _fairness),
    ("cost ceiling", _cost_ceiling),
    ("non-regression against the champion", _non_regression),
]


def gate_version(config: PipelineConfig, storage: Storage, version: str) -> dict:
    """Floors, fairness limits, cost and non-regression against the champion; writes gate.json
    (inputs, numbers, intervals, verdict, reasons) and the verdict into the report."""
    model_name = config.model_name
    key = layout.model_version(model_name, version)
    try:
        evaluation = storage.read_json(f"{key}/{EVALUATION}")
    except FileNotFoundError as exc:
        raise registry.RegistryError(f"{model_name} {version} has not been evaluated") from exc
    metrics, comparison = evaluation["metrics"], evaluation["comparison"]
    decision = gate_decision(metrics, config.gate.min_metrics, config.gate.max_metrics)
    checks = {name: check(config, version, evaluation) for name, check in CHECKS}
    reasons = [reason for found in checks.values() for reason in found]
    notes = [] if comparison.get("possible") else [f"not compared with a champion: {comparison.get('reason')}"]
    decision.update(
        {
            "passed": not reasons,
            "reasons": reasons,
            "checks": {name: {"passed": not found, "reasons": found} for name, found in checks.items()},
            "notes": notes,
            "model": model_name,
            "version": version,
            "metrics": {k: v for k, v in metrics.items() if isinstance(v, float)},
            "comparison": comparison,
            "fairness": {
                a: {
                    k: r.get(k)
                    for k in ("demographic_parity_ratio", "equal_opportunity_difference", "too_small_groups")
                }
                for a, r in evaluation["fairness"].items()
            },
            "gate_config": {
                "primary_metric": config.gate.primary_metric,
                "min_improvement": config.gate.min_improvement,
                "max_cost_increase": config.gate.max_cost_increase,
                "max_cost_per_1000": config.gate.max_cost_per_1000,
                "fairness": {
                    "min_demographic_parity_ratio": config.fairness.min_demographic_parity_ratio,
                    "max_equal_opportunity_difference": config.fairness.max_equal_opportunity_difference,
                    "min_group_size": config.fairness.min_group_size,
                },
            },
            "decided_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
    )
    storage.write_json(f"{key}/{registry.GATE}", decision)
    from pipeline.ops import audit

    audit.record(
        storage,
        "gate",
        f"{model_name} {version}: gate {'passed' if decision['passed'] else 'rejected'}",
        why="; ".join(decision["reasons"]) or "every floor, limit and comparison holds",
        model=model_name,
        version=version,
        passed=decision["passed"],
        report=storage.uri(f"{key}/{REPORT}"),
    )
    registry.update_manifest(
        storage, model_name, version, gate={"passed": decision["passed"], "reasons": decision["reasons"]}
    )
    card.refresh(config, storage, version)
    manifest = registry.read_manifest(storage, model_name, version)
    figures = storage.read_json(f"{key}/{FIGURES}") if storage.exists(f"{key}/{FIGURES}") else {}
    storage.write_bytes(f"{key}/{REPORT}", render_report(manifest, evaluation, figures, decision).encode())
    return {
        "version": version,
        "passed": decision["passed"],
        "reasons": decision["reasons"],
        "metrics": {k: round(v, 4) for k, v in decision["metrics"].items()},
        "gate": storage.uri(f"{key}/{registry.GATE}"),
        "evaluation_report": storage.uri(f"{key}/{REPORT}"),
        "model_card": storage.uri(f"{key}/{card.HTML}"),
    }
