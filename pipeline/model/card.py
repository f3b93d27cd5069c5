"""A model card per version, for reviewers and auditors: models/<m>/versions/<v>/model_card.md and
.html, gathered from what storage holds about the version (manifest, evaluation, gate, registry
history, the drift monitor's decisions while it served). Written at training and rewritten at
evaluation, gate, approval, promotion and every monitoring run. Sections follow the headings of the
EU AI Act's Annex IV (technical documentation) where they apply. Only aggregates: no row's values."""

from __future__ import annotations

import html
import logging
from typing import Any

from pipeline.core import layout
from pipeline.core.settings import PipelineConfig
from pipeline.core.storage import Storage
from pipeline.model import registry

log = logging.getLogger(__name__)

MARKDOWN, HTML = "model_card.md", "model_card.html"
NONE_YET = "none yet"


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, list | tuple):
        return "; ".join(_fmt(v) for v in value) or "–"
    return str(value)


def _json(storage: Storage, key: str) -> dict | None:
    return storage.read_json(key) if storage.exists(key) else None


def gather(config: PipelineConfig, storage: Storage, version: str) -> list[tuple[str, list[tuple[str, Any]]]]:
    """The card's sections: (heading, [(label, value)]), every value read from storage or params."""
    model = config.model_name
    manifest = registry.read_manifest(storage, model, version)
    key = layout.model_version(model, version)
    evaluation = _json(storage, f"{key}/evaluation.json") or {}
    gate = _json(storage, f"{key}/{registry.GATE}")
    data, metrics = manifest.get("data", {}), evaluation.get("metrics") or manifest.get("metrics") or {}
    intervals = evaluation.get("intervals", {})
    events = [h for h in registry.history(storage, model) if h.get("version") == version]
    served = [
        d
        for d in (
            storage.read_json(k) for k in storage.list_keys(layout.monitoring_decisions(model)) if k.endswith(".json")
        )
        if d.get("champion_version") == version
    ]
    fairness = evaluation.get("fairness", {})
    schema = manifest.get("schema", {})
    importance = sorted((manifest.get("importance") or {}).get("features", {}).items(), key=lambda kv: -kv[1]["mean"])
    limits = f"groups under {config.fairness.min_group_size} rows are reported, not judged" if fairness else None
    small = [f"{a}={g['group']}" for a, r in fairness.items() for g in r.get("groups", []) if g.get("too_small")]
    cost = manifest.get("threshold_selection", {})
    return [
        (
            "1. General description",
            [
                ("Model, version", f"{model} {version} (status: {_status(storage, model, version)})"),
                ("Intended purpose", config.model.intended_use or "not stated in params (model.intended_use)"),
                ("Out of scope", list(config.model.out_of_scope) or "not stated in params (model.out_of_scope)"),
                ("Trained as of, reason", f"{manifest.get('trained_as_of')}, {manifest.get('reason')}"),
                (
                    "Estimator",
                    f"{config.training.estimator} {dict(manifest['params']['training']['estimator_params'])}",
                ),
                ("Code revision", manifest.get("code_revision")),
                ("Libraries", ", ".join(f"{k} {v}" for k, v in manifest.get("libraries", {}).items())),
            ],
        ),
        (
            "2. Data and lineage",
            [
                ("Dataset, training window", f"{manifest.get('dataset')}, {' .. '.join(data.get('window', []))}"),
                ("Training rows, holdout rows", f"{data.get('train_rows')}, {data.get('holdout_rows')}"),
                ("Snapshot", f"{data.get('snapshot_id')} (sha256 {str(data.get('snapshot_sha256'))[:16]}…)"),
                ("DVC", (data.get("dvc") or {}).get("md5") or "not versioned by DVC (dvc.enabled: false)"),
                ("Data contract", _fmt((manifest.get("data_contract") or {}).get("version"))),
                (
                    "Features",
                    f"{len(schema.get('numeric', []))} numeric, {len(schema.get('categorical', []))} categorical",
                ),
                ("Sensitive attributes", _sensitive(config, schema)),
            ],
        ),
        (
            "3. Performance (holdout)",
            [
                (
                    m,
                    f"{_fmt(metrics.get(m))}"
                    + (f" [{_fmt(intervals[m][0])}, {_fmt(intervals[m][1])}]" if m in intervals else ""),
                )
                for m in ("roc_auc", "pr_auc", "precision", "recall", "f1", "brier")
                if m in metrics
            ]
            + [("Cross-validation", _fmt((manifest.get("cross_validation") or {}).get("roc_auc_mean")))],
        ),
        (
            "4. Decision threshold and cost",
            [
                ("Threshold", _fmt(manifest.get("threshold"))),
                ("Chosen by", cost.get("method")),
                (
                    "Cost per 1,000 decisions (holdout)",
                    f"{metrics['cost_per_1000']:.1f}" if "cost_per_1000" in metrics else "no cost section in params",
                ),
            ],
        ),
        (
            "5. Fairness by group",
            [
                (
                    attr,
                    f"demographic-parity ratio {_fmt(r.get('demographic_parity_ratio'))} "
                    f"(limit {_fmt(config.fairness.min_demographic_parity_ratio)}), equal-opportunity difference "
                    f"{_fmt(r.get('equal_opportunity_difference'))} (limit {_fmt(config.fairness.max_equal_opportunity_difference)}); "
                    + "; ".join(
                        f"{g['group']}: {g['count']} rows, selection {_fmt(g['selection_rate'])}"
                        for g in r.get("groups", [])
                    ),
                )
                for attr, r in fairness.items()
            ]
            or [("Fairness", NONE_YET)],
        ),
        (
            "6. Explanations (permutation importance)",
            [(f, _fmt(v["mean"])) for f, v in importance[:8]] or [("Importance", NONE_YET)],
        ),
        (
            "7. Known limitations",
            [("Stated", list(config.model.limitations) or "none stated (model.limitations)")]
            + [("Fairness", limits or "no sensitive attributes declared")]
            + [("Groups too small to judge", small or "none")]
            + [("Gate notes", (gate or {}).get("notes") or "none")],
        ),
        (
            "8. Human oversight",
            [
                (
                    "Gate",
                    f"{'passed' if gate['passed'] else 'failed'}: {'; '.join(gate['reasons']) or 'every check holds'}"
                    if gate
                    else NONE_YET,
                ),
                (
                    "Approvals",
                    [
                        f"{e['outcome']} by {e.get('actor')} at {e['at']}: {e.get('reason') or '-'}"
                        for e in events
                        if e.get("action") == "approval"
                    ]
                    or NONE_YET,
                ),
                (
                    "Alias moves",
                    [
                        f"{e['action']} to {e.get('alias')} by {e.get('actor')} at {e['at']}: {e.get('reason') or '-'}"
                        for e in events
                        if e.get("action") != "approval"
                    ]
                    or NONE_YET,
                ),
            ],
        ),
        (
            "9. Post-deployment monitoring",
            [
                (
                    d["as_of"],
                    f"{'retrain' if d['retrain'] else 'no retrain'}: {d['reason']} (drifted: {', '.join(d['drifted_features']) or 'none'})",
                )
                for d in sorted(served, key=lambda d: d["as_of"])
            ]
            or [("Drift history", "not monitored while serving yet")],
        ),
    ]


def _sensitive(config: PipelineConfig, schema: dict) -> str:
    declared = list(config.dataset.sensitive_attributes)
    if not declared:
        return "none declared"
    used = [a for a in declared if a in schema.get("numeric", []) + schema.get("categorical", [])]
    return f"{', '.join(declared)}; used as features: {', '.join(used) or 'none'} (judged for fairness in section 5)"


def _status(storage: Storage, model: str, version: str) -> str:
    aliases = {a: (registry.get_alias(storage, model, a) or {}).get("version") for a in registry.ALIASES}
    return next((a for a, v in aliases.items() if v == version), "candidate")


def render_markdown(title: str, sections: list) -> str:
    lines = [f"# {title}", ""]
    for heading, rows in sections:
        lines += [f"## {heading}", "", "| | |", "|---|---|"]
        lines += [f"| {label} | {_fmt(value).replace('|', '/')} |" for label, value in rows] + [""]
    return "\n".join(lines)


def render_html(title: str, sections: list) -> str:
    body = "".join(
        f"<h2>{html.escape(heading)}</h2><table>"
        + "".join(
            f"<tr><th>{html.escape(str(label))}</th><td>{html.escape(_fmt(value))}</td></tr>" for label, value in rows
        )
        + "</table>"
        for heading, rows in sections
    )
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>'
        "body{font-family:sans-serif;margin:2em;max-width:1100px}th{text-align:left;vertical-align:top;"
        "padding:3px 12px 3px 0;width:28%}td{padding:3px 0}table{border-collapse:collapse;margin-bottom:1em}"
        f"tr{{border-bottom:1px solid #eee}}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )


def write_card(config: PipelineConfig, storage: Storage, version: str) -> dict:
    """(Re)write the version's card; returns where it is and which sections it has."""
    sections = gather(config, storage, version)
    title = f"Model card: {config.model_name} {version}"
    key = layout.model_version(config.model_name, version)
    storage.write_bytes(f"{key}/{MARKDOWN}", render_markdown(title, sections).encode())
    storage.write_bytes(f"{key}/{HTML}", render_html(title, sections).encode())
    return {
        "html": storage.uri(f"{key}/{HTML}"),
        "markdown": storage.uri(f"{key}/{MARKDOWN}"),
        "sections": [h for h, _ in sections],
    }


def refresh(config: PipelineConfig, storage: Storage, version: str | None) -> None:
    """Rewrite the card after something about the version changed; a card that cannot be written is
    logged, never fails the decision it documents."""
    if not version:
        return
    try:
        write_card(config, storage, version)
    except Exception as exc:  # noqa: BLE001 - the card documents; the decision stands
        log.warning("could not write the model card of %s: %s", version, exc)
