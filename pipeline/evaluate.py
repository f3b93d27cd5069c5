"""Evaluation on the snapshot's holdout, the HTML report, and the gate on absolute floors."""
from __future__ import annotations

import base64
import datetime as dt
import html
import io
import logging

import numpy as np
from sklearn import metrics as skm

from . import layout, registry
from .config import PipelineConfig
from .features import feature_frame, target_vector
from .snapshot import SPLIT_COLUMN, read_snapshot
from .source import Schema
from .storage import Storage

log = logging.getLogger(__name__)

REPORT = "evaluation.html"
METRICS = "metrics.json"


def classification_metrics(y_true: np.ndarray, score: np.ndarray, threshold: float) -> dict:
    """Holdout metrics; pure function of labels and scores."""
    y_true = np.asarray(y_true, dtype="int64")
    score = np.asarray(score, dtype="float64")
    if len(np.unique(y_true)) < 2:
        raise ValueError("holdout has a single class; ROC/PR AUC are undefined")
    pred = (score >= threshold).astype("int64")
    tn, fp, fn, tp = skm.confusion_matrix(y_true, pred, labels=[0, 1]).ravel()
    return {
        "roc_auc": float(skm.roc_auc_score(y_true, score)),
        "pr_auc": float(skm.average_precision_score(y_true, score)),
        "f1": float(skm.f1_score(y_true, pred, zero_division=0)),
        "precision": float(skm.precision_score(y_true, pred, zero_division=0)),
        "recall": float(skm.recall_score(y_true, pred, zero_division=0)),
        "brier": float(skm.brier_score_loss(y_true, score)),
        "accuracy": float(skm.accuracy_score(y_true, pred)),
        "threshold": float(threshold),
        "rows": int(len(y_true)),
        "positives": int(y_true.sum()),
        "confusion": {"tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)},
    }


def gate_decision(metrics: dict, min_metrics: dict, max_metrics: dict) -> dict:
    """Pass only if every floor and ceiling holds; each breach is a reason."""
    reasons = []
    for name, floor in sorted(min_metrics.items()):
        if metrics[name] < floor:
            reasons.append(f"{name} {metrics[name]:.4f} is below the floor {floor}")
    for name, ceiling in sorted(max_metrics.items()):
        if metrics[name] > ceiling:
            reasons.append(f"{name} {metrics[name]:.4f} is above the ceiling {ceiling}")
    return {"passed": not reasons, "reasons": reasons,
            "min_metrics": dict(min_metrics), "max_metrics": dict(max_metrics)}


def _plot_png(y_true, score) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    fpr, tpr, _ = skm.roc_curve(y_true, score)
    axes[0].plot(fpr, tpr, label="model")
    axes[0].plot([0, 1], [0, 1], "--", color="grey", label="chance")
    axes[0].set(title="ROC curve", xlabel="false positive rate", ylabel="true positive rate")
    axes[0].legend(loc="lower right")
    prec, rec, _ = skm.precision_recall_curve(y_true, score)
    axes[1].plot(rec, prec)
    axes[1].axhline(np.mean(y_true), ls="--", color="grey", label="base rate")
    axes[1].set(title="Precision-recall curve", xlabel="recall", ylabel="precision")
    axes[1].legend(loc="upper right")
    bins = np.linspace(0, 1, 11)
    idx = np.clip(np.digitize(score, bins) - 1, 0, 9)
    mean_pred = [score[idx == b].mean() for b in range(10) if (idx == b).any()]
    frac_pos = [y_true[idx == b].mean() for b in range(10) if (idx == b).any()]
    axes[2].plot(mean_pred, frac_pos, "o-", label="model")
    axes[2].plot([0, 1], [0, 1], "--", color="grey", label="perfectly calibrated")
    axes[2].set(title="Calibration", xlabel="mean predicted probability", ylabel="observed positive rate")
    axes[2].legend(loc="upper left")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def render_report(manifest: dict, metrics: dict, png_b64: str) -> str:
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{v:.4f}</td></tr>"
                   for k, v in metrics.items() if isinstance(v, float))
    c = metrics["confusion"]
    data = manifest["data"]
    return f"""<!doctype html><html><head><meta charset="utf-8">
<title>Evaluation {html.escape(manifest['model'])} {html.escape(manifest['version'])}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}td,th{{padding:2px 10px;text-align:left}}
table{{border-collapse:collapse}}tr:nth-child(even){{background:#f4f4f4}}</style></head><body>
<h1>{html.escape(manifest['model'])} — version {html.escape(manifest['version'])}</h1>
<p>Trained as of {html.escape(manifest['trained_as_of'])} on snapshot
<code>{html.escape(data['snapshot_id'])}</code> (window {html.escape(' .. '.join(data['window']))},
{data['train_rows']} training rows); evaluated on {metrics['rows']} holdout rows
({metrics['positives']} positive). Code <code>{html.escape(manifest['code_revision'])}</code>.</p>
<h2>Holdout metrics (threshold {metrics['threshold']})</h2>
<table><tr><th>metric</th><th>value</th></tr>{rows}</table>
<h2>Confusion matrix</h2>
<table><tr><th></th><th>predicted 0</th><th>predicted 1</th></tr>
<tr><th>actual 0</th><td>{c['tn']}</td><td>{c['fp']}</td></tr>
<tr><th>actual 1</th><td>{c['fn']}</td><td>{c['tp']}</td></tr></table>
<h2>Curves</h2><img alt="ROC, precision-recall and calibration curves" src="data:image/png;base64,{png_b64}">
<h2>Cross-validation on the training split</h2>
<pre>{html.escape(str(manifest.get('cross_validation')))}</pre>
</body></html>"""


def evaluate_version(config: PipelineConfig, storage: Storage, version: str) -> dict:
    """Holdout metrics for a version; writes metrics.json and evaluation.html beside it."""
    model_name = config.model_name
    estimator, manifest = registry.load_model(storage, model_name, version)
    frame, _meta = read_snapshot(storage, manifest["dataset"], manifest["data"]["snapshot_id"])
    schema = Schema.from_dict(manifest["schema"])
    holdout = frame[frame[SPLIT_COLUMN] == "holdout"]
    y = target_vector(holdout[config.dataset.target.column], manifest["positive_class"])
    score = estimator.predict_proba(feature_frame(holdout, schema))[:, 1]
    metrics = classification_metrics(y, score, manifest["threshold"])
    key = layout.model_version(model_name, version)
    storage.write_json(f"{key}/{METRICS}", metrics)
    storage.write_bytes(f"{key}/{REPORT}", render_report(manifest, metrics, _plot_png(y, score)).encode())
    registry.update_manifest(storage, model_name, version, metrics=metrics)
    log.info("%s holdout: roc_auc %.4f pr_auc %.4f f1 %.4f", version, metrics["roc_auc"], metrics["pr_auc"],
             metrics["f1"])
    return {"version": version, "metrics": {k: round(v, 6) for k, v in metrics.items() if isinstance(v, float)},
            "report": storage.uri(f"{key}/{REPORT}")}


def gate_version(config: PipelineConfig, storage: Storage, version: str) -> dict:
    """Apply the absolute floors; write gate.json and refresh the report with the verdict."""
    model_name = config.model_name
    key = layout.model_version(model_name, version)
    try:
        metrics = storage.read_json(f"{key}/{METRICS}")
    except FileNotFoundError as exc:
        raise registry.RegistryError(f"{model_name} {version} has not been evaluated") from exc
    decision = gate_decision(metrics, dict(config.gate.min_metrics), dict(config.gate.max_metrics))
    decision.update({"model": model_name, "version": version,
                     "metrics": {k: v for k, v in metrics.items() if isinstance(v, float)},
                     "decided_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")})
    storage.write_json(f"{key}/{registry.GATE}", decision)
    registry.update_manifest(storage, model_name, version, gate={"passed": decision["passed"],
                                                                 "reasons": decision["reasons"]})
    report = storage.read_bytes(f"{key}/{REPORT}").decode()
    colour = "#1a7f37" if decision["passed"] else "#cf222e"
    text = "PASSED" if decision["passed"] else "FAILED: " + "; ".join(decision["reasons"])
    banner = f'<p style="color:{colour};font-weight:bold">Gate {html.escape(text)}</p>'
    storage.write_bytes(f"{key}/{REPORT}", report.replace("<h2>Holdout metrics", banner + "\n<h2>Holdout metrics", 1).encode())
    return {"version": version, "passed": decision["passed"], "reasons": decision["reasons"],
            "gate": storage.uri(f"{key}/{registry.GATE}")}
