"""Evaluation of a candidate on its snapshot's holdout: metrics, cost, fairness and the comparison with
the champion; writes metrics.json, evaluation.json, figures.json and the report (pipeline/model/report.py)."""

from __future__ import annotations

import datetime as dt
import logging

import numpy as np

from pipeline.core import layout
from pipeline.core.settings import PipelineConfig
from pipeline.core.storage import Storage
from pipeline.data.snapshot import DAY_COLUMN, SPLIT_COLUMN, read_snapshot
from pipeline.data.source import Schema
from pipeline.model import card, registry, report
from pipeline.model.comparison import metric_intervals, paired_bootstrap
from pipeline.model.cost import cost_per_1000
from pipeline.model.fairness import fairness_report
from pipeline.model.features import feature_frame, target_vector
from pipeline.model.metrics import classification_metrics

log = logging.getLogger(__name__)

METRICS = "metrics.json"
EVALUATION = "evaluation.json"


def _holdout_days_overlap(champion_manifest: dict, holdout_days: set[str]) -> set[str]:
    data = champion_manifest["data"]
    train_days = set(data.get("train_days") or [])
    if not train_days:  # older manifests: the window minus its holdout
        first, last = (dt.date.fromisoformat(d) for d in data["window"])
        holdout = champion_manifest["params"]["training"]["holdout_days"]
        days = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
        train_days = {d.isoformat() for d in days[:-holdout]}
    return train_days & holdout_days


def compare_with_champion(
    config: PipelineConfig, storage: Storage, version: str, holdout, y: np.ndarray, score: np.ndarray, threshold: float
) -> dict:
    model_name = config.model_name
    alias = registry.get_alias(storage, model_name)
    if not alias:
        return {"possible": False, "reason": "there is no champion yet"}
    champion = alias["version"]
    if champion == version:
        return {
            "possible": False,
            "same_version": True,
            "champion_version": champion,
            "reason": f"{version} is the champion itself",
        }
    champ_manifest = registry.read_manifest(storage, model_name, champion)
    overlap = _holdout_days_overlap(champ_manifest, set(holdout[DAY_COLUMN]))
    if overlap:
        return {
            "possible": False,
            "champion_version": champion,
            "reason": f"champion {champion} trained on {len(overlap)} of the holdout days "
            f"({min(overlap)} .. {max(overlap)}), so it cannot be judged on them",
        }
    estimator, _ = registry.load_model(storage, model_name, champion)
    try:
        champ_score = estimator.predict_proba(feature_frame(holdout, Schema.from_dict(champ_manifest["schema"])))[:, 1]
    except ValueError as exc:
        return {"possible": False, "champion_version": champion, "reason": f"champion cannot score the holdout: {exc}"}
    g = config.gate
    out = {
        "possible": True,
        "champion_version": champion,
        "champion_metrics": classification_metrics(y, champ_score, champ_manifest["threshold"]),
        "bootstrap": paired_bootstrap(
            y,
            score,
            champ_score,
            g.primary_metric,
            threshold,
            champ_manifest["threshold"],
            g.bootstrap_resamples,
            g.confidence,
            config.training.random_state,
        ),
    }
    if config.cost:
        out["candidate_cost_per_1000"] = cost_per_1000(y, score, threshold, config.cost)
        out["champion_cost_per_1000"] = cost_per_1000(y, champ_score, champ_manifest["threshold"], config.cost)
    out["_champion_score"] = champ_score
    return out


def evaluate_version(config: PipelineConfig, storage: Storage, version: str) -> dict:
    """Holdout metrics, cost, fairness and the comparison with the champion; writes
    metrics.json, evaluation.json and evaluation.html beside the version."""
    model_name = config.model_name
    estimator, manifest = registry.load_model(storage, model_name, version)
    frame, _meta = read_snapshot(storage, manifest["dataset"], manifest["data"]["snapshot_id"])
    schema = Schema.from_dict(manifest["schema"])
    holdout = frame[frame[SPLIT_COLUMN] == "holdout"]
    y = target_vector(holdout[config.dataset.target.column], manifest["positive_class"])
    score = estimator.predict_proba(feature_frame(holdout, schema))[:, 1]
    threshold = manifest["threshold"]
    metrics = classification_metrics(y, score, threshold)
    if config.cost:
        metrics["cost_per_1000"] = cost_per_1000(y, score, threshold, config.cost)
    g = config.gate
    intervals = metric_intervals(
        y, score, threshold, ("roc_auc", "pr_auc"), g.bootstrap_resamples, g.confidence, config.training.random_state
    )
    fairness = fairness_report(holdout, y, score >= threshold, config.dataset.sensitive_attributes, config.fairness)
    comparison = compare_with_champion(config, storage, version, holdout, y, score, threshold)
    champ_score = comparison.pop("_champion_score", None)
    evaluation = {
        "model": model_name,
        "version": version,
        "metrics": metrics,
        "intervals": {"confidence": g.confidence, "resamples": g.bootstrap_resamples, **intervals},
        "fairness": fairness,
        "comparison": comparison,
        "importance": (manifest.get("importance") or {}).get("features", {}),
        "threshold_selection": {k: v for k, v in manifest.get("threshold_selection", {}).items() if k != "curve"},
    }
    curves = {"candidate": (score, threshold)}
    if champ_score is not None:
        curves[f"champion {comparison['champion_version']}"] = (champ_score, 0.0)
    figures = report.figures(y, curves, manifest, fairness, evaluation["importance"])
    key = layout.model_version(model_name, version)
    storage.write_json(f"{key}/{METRICS}", metrics)
    storage.write_json(f"{key}/{EVALUATION}", evaluation)
    storage.write_json(f"{key}/{report.FIGURES}", figures)
    storage.write_bytes(f"{key}/{report.REPORT}", report.render_report(manifest, evaluation, figures).encode())
    registry.update_manifest(storage, model_name, version, metrics=metrics)
    card.refresh(config, storage, version)
    log.info(
        "%s holdout: roc_auc %.4f pr_auc %.4f f1 %.4f", version, metrics["roc_auc"], metrics["pr_auc"], metrics["f1"]
    )
    return {
        "version": version,
        "metrics": {k: round(v, 6) for k, v in metrics.items() if isinstance(v, float)},
        "compared_with": comparison.get("champion_version") if comparison.get("possible") else None,
        "report": storage.uri(f"{key}/{report.REPORT}"),
        "evaluation_report": storage.uri(f"{key}/{report.REPORT}"),
        "model_card": storage.uri(f"{key}/{card.HTML}"),
    }
