"""Evaluation on the snapshot's holdout, the HTML report, and the gate on absolute floors."""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import logging

import numpy as np
from sklearn import metrics as skm

from pipeline.core import layout
from pipeline.core.settings import PipelineConfig
from pipeline.core.storage import Storage
from pipeline.data.snapshot import DAY_COLUMN, SPLIT_COLUMN, read_snapshot
from pipeline.data.source import Schema
from pipeline.model import registry
from pipeline.model.comparison import paired_bootstrap
from pipeline.model.cost import cost_per_1000
from pipeline.model.fairness import fairness_breaches, fairness_report
from pipeline.model.features import feature_frame, target_vector

log = logging.getLogger(__name__)

REPORT = "evaluation.html"
METRICS = "metrics.json"
EVALUATION = "evaluation.json"
GATE_START, GATE_END = "<!--gate-->", "<!--/gate-->"


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


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=85)
    _plt().close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _curves_png(y, curves: dict[str, tuple[np.ndarray, float]]) -> str:
    """ROC and PR overlays (one line per model) and calibration of the candidate."""
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.3))
    for name, (score, _t) in curves.items():
        fpr, tpr, _ = skm.roc_curve(y, score)
        axes[0].plot(fpr, tpr, label=f"{name} (AUC {skm.roc_auc_score(y, score):.3f})")
        prec, rec, _ = skm.precision_recall_curve(y, score)
        axes[1].plot(rec, prec, label=f"{name} (AP {skm.average_precision_score(y, score):.3f})")
    axes[0].plot([0, 1], [0, 1], "--", color="grey")
    axes[0].set(title="ROC curve", xlabel="false positive rate", ylabel="true positive rate")
    axes[1].axhline(np.mean(y), ls="--", color="grey", label="base rate")
    axes[1].set(title="Precision-recall curve", xlabel="recall", ylabel="precision")
    score = next(iter(curves.values()))[0]
    bins = np.linspace(0, 1, 11)
    idx = np.clip(np.digitize(score, bins) - 1, 0, 9)
    present = [b for b in range(10) if (idx == b).any()]
    axes[2].plot(
        [score[idx == b].mean() for b in present], [y[idx == b].mean() for b in present], "o-", label="candidate"
    )
    axes[2].plot([0, 1], [0, 1], "--", color="grey", label="perfectly calibrated")
    axes[2].set(title="Calibration (candidate)", xlabel="mean predicted probability", ylabel="observed positive rate")
    for ax in axes:
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return _png(fig)


def _cost_png(selection: dict) -> str | None:
    curve = selection.get("curve")
    if not curve:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.plot(curve["threshold"], curve["cost_per_1000"], label="out-of-fold training predictions")
    ax.axvline(selection["threshold"], color="#cf222e", ls="--", label=f"chosen threshold {selection['threshold']:.3f}")
    ax.set(
        title=f"Expected cost per 1,000 decisions (FP {selection['false_positive']:g}, "
        f"FN {selection['false_negative']:g})",
        xlabel="threshold",
        ylabel="cost per 1,000",
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def _fairness_png(fairness: dict) -> str | None:
    attrs = [a for a, r in fairness.items() if "groups" in r]
    if not attrs:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(attrs), figsize=(4 * len(attrs), 3.4), squeeze=False)
    for ax, attr in zip(axes[0], attrs, strict=True):
        groups = fairness[attr]["groups"]
        x = np.arange(len(groups))
        ax.bar(x - 0.2, [g["selection_rate"] or 0 for g in groups], 0.4, label="selection rate")
        ax.bar(x + 0.2, [g["tpr"] or 0 for g in groups], 0.4, label="TPR")
        ax.set_xticks(x, [g["group"] + (" *" if g["too_small"] else "") for g in groups], fontsize=7, rotation=30)
        ax.set_title(attr, fontsize=10)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


def _importance_png(importance: dict) -> str | None:
    if not importance:
        return None
    plt = _plt()
    # Ranked by value: stored JSON keeps no order (keys are sorted on write).
    top = sorted(importance.items(), key=lambda kv: -kv[1]["mean"])[:15][::-1]
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(top) + 1.2))
    means = [v["mean"] for _, v in top]
    err = [[v["mean"] - v["ci_low"] for _, v in top], [v["ci_high"] - v["mean"] for _, v in top]]
    ax.barh([k for k, _ in top], means, xerr=err, color="#8da0cb")
    ax.set(title="Permutation importance (drop in holdout ROC AUC, 95% interval)", xlabel="importance")
    ax.tick_params(labelsize=8)
    fig.tight_layout()
    return _png(fig)


def _f(v, digits=4) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return html.escape(str(v))


def _img(png: str | None, alt: str) -> str:
    return f'<img alt="{alt}" src="data:image/png;base64,{png}">' if png else "<p>–</p>"


def render_report(manifest: dict, evaluation: dict, figures: dict) -> str:
    metrics, comparison = evaluation["metrics"], evaluation["comparison"]
    c = metrics["confusion"]
    data = manifest["data"]
    champ = comparison.get("champion_metrics") or {}
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{_f(metrics[k])}</td><td>{_f(champ.get(k))}</td></tr>"
        for k in ("roc_auc", "pr_auc", "f1", "precision", "recall", "brier", "accuracy", "threshold")
    )
    if comparison.get("possible"):
        b = comparison["bootstrap"]
        cmp_html = (
            f"<p>Both scored on this candidate's holdout ({metrics['rows']} rows), which champion "
            f"<code>{html.escape(comparison['champion_version'])}</code> never trained on. "
            f"{html.escape(b['metric'])}: candidate {b['candidate']:.4f} [{b['candidate_ci'][0]:.4f}, "
            f"{b['candidate_ci'][1]:.4f}], champion {b['champion']:.4f} [{b['champion_ci'][0]:.4f}, "
            f"{b['champion_ci'][1]:.4f}], difference {b['difference']:+.4f} "
            f"[{b['difference_ci'][0]:+.4f}, {b['difference_ci'][1]:+.4f}] "
            f"({b['confidence']:.0%} paired bootstrap, {b['resamples']} resamples, seed {b['seed']}).</p>"
            f"<p>Expected cost per 1,000 decisions: candidate {_f(comparison.get('candidate_cost_per_1000'), 1)}, "
            f"champion {_f(comparison.get('champion_cost_per_1000'), 1)}.</p>"
        )
    else:
        cmp_html = (
            f"<p>No comparison with a champion: {html.escape(comparison.get('reason', ''))}. "
            f"The gate applies the floors only.</p>"
        )
    fair_rows = []
    for attr, r in evaluation["fairness"].items():
        for g in r.get("groups", []):
            fair_rows.append(
                f"<tr><td>{html.escape(attr)}</td><td>{html.escape(g['group'])}</td><td>{g['count']}</td>"
                f"<td>{_f(g['selection_rate'], 3)}</td><td>{_f(g['tpr'], 3)}</td><td>{_f(g['fpr'], 3)}</td>"
                f"<td>{_f(g['precision'], 3)}</td><td>{'too small' if g['too_small'] else ''}</td></tr>"
            )
        if "groups" in r:
            fair_rows.append(
                f"<tr><td colspan=8><i>{html.escape(attr)}: demographic-parity ratio "
                f"{_f(r['demographic_parity_ratio'], 3)}, equal-opportunity difference "
                f"{_f(r['equal_opportunity_difference'], 3)}</i></td></tr>"
            )
    selection = manifest.get("threshold_selection", {})
    return f"""<!doctype html><html><head><meta charset="utf-8">
<title>Evaluation {html.escape(manifest["model"])} {html.escape(manifest["version"])}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1200px}}td,th{{padding:2px 10px;text-align:left}}
table{{border-collapse:collapse;margin-bottom:1em}}tr:nth-child(even){{background:#f4f4f4}}img{{max-width:100%}}</style></head><body>
<h1>{html.escape(manifest["model"])} — version {html.escape(manifest["version"])}</h1>
<p>Trained as of {html.escape(manifest["trained_as_of"])} ({html.escape(str(manifest.get("reason")))}) on snapshot
<code>{html.escape(data["snapshot_id"])}</code> (window {html.escape(" .. ".join(data["window"]))},
{data["train_rows"]} training rows); evaluated on {metrics["rows"]} holdout rows
({metrics["positives"]} positive). Code <code>{html.escape(manifest["code_revision"])}</code>.</p>
{GATE_START}<p><i>Not gated yet.</i></p>{GATE_END}
<h2>Candidate vs champion (holdout)</h2>
<table><tr><th>metric</th><th>candidate</th><th>champion</th></tr>{rows}</table>
{cmp_html}
{_img(figures.get("curves"), "ROC and PR overlays, calibration")}
<h2>Cost of errors and the threshold</h2>
<p>Threshold {metrics["threshold"]:.3f}: {html.escape(selection.get("method", ""))}.
Expected cost on the holdout: {_f(metrics.get("cost_per_1000"), 1)} per 1,000 decisions.</p>
{_img(figures.get("cost"), "cost curve")}
<h2>Confusion matrix</h2>
<table><tr><th></th><th>predicted 0</th><th>predicted 1</th></tr>
<tr><th>actual 0</th><td>{c["tn"]}</td><td>{c["fp"]}</td></tr>
<tr><th>actual 1</th><td>{c["fn"]}</td><td>{c["tp"]}</td></tr></table>
<h2>Fairness by group (holdout, at the threshold)</h2>
<table><tr><th>attribute</th><th>group</th><th>rows</th><th>selection rate</th><th>TPR</th><th>FPR</th><th>precision</th><th></th></tr>
{"".join(fair_rows)}</table>
{_img(figures.get("fairness"), "selection rate and TPR by group")}
<h2>Explanations</h2>
{_img(figures.get("importance"), "permutation importance")}
<h2>Cross-validation on the training split</h2>
<pre>{html.escape(str(manifest.get("cross_validation")))}</pre>
</body></html>"""


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
    fairness = fairness_report(holdout, y, score >= threshold, config.dataset.sensitive_attributes, config.fairness)
    comparison = compare_with_champion(config, storage, version, holdout, y, score, threshold)
    champ_score = comparison.pop("_champion_score", None)
    evaluation = {
        "model": model_name,
        "version": version,
        "metrics": metrics,
        "fairness": fairness,
        "comparison": comparison,
        "importance": (manifest.get("importance") or {}).get("features", {}),
        "threshold_selection": {k: v for k, v in manifest.get("threshold_selection", {}).items() if k != "curve"},
    }
    curves = {"candidate": (score, threshold)}
    if champ_score is not None:
        curves[f"champion {comparison['champion_version']}"] = (champ_score, 0.0)
    figures = {
        "curves": _curves_png(y, curves),
        "cost": _cost_png(manifest.get("threshold_selection", {})),
        "fairness": _fairness_png(fairness),
        "importance": _importance_png(evaluation["importance"]),
    }
    key = layout.model_version(model_name, version)
    storage.write_json(f"{key}/{METRICS}", metrics)
    storage.write_json(f"{key}/{EVALUATION}", evaluation)
    storage.write_bytes(f"{key}/{REPORT}", render_report(manifest, evaluation, figures).encode())
    registry.update_manifest(storage, model_name, version, metrics=metrics)
    log.info(
        "%s holdout: roc_auc %.4f pr_auc %.4f f1 %.4f", version, metrics["roc_auc"], metrics["pr_auc"], metrics["f1"]
    )
    return {
        "version": version,
        "metrics": {k: round(v, 6) for k, v in metrics.items() if isinstance(v, float)},
        "compared_with": comparison.get("champion_version") if comparison.get("possible") else None,
        "report": storage.uri(f"{key}/{REPORT}"),
        "evaluation_report": storage.uri(f"{key}/{REPORT}"),
    }


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
    decision = gate_decision(metrics, dict(config.gate.min_metrics), dict(config.gate.max_metrics))
    reasons = list(decision["reasons"])
    if comparison.get("same_version"):
        reasons.append(f"{version} is already the champion: a version is not promoted over itself")
    reasons += fairness_breaches(evaluation["fairness"], config.fairness)
    if (
        config.cost
        and config.gate.max_cost_per_1000 is not None
        and metrics.get("cost_per_1000", 0) > config.gate.max_cost_per_1000
    ):
        reasons.append(
            f"expected cost {metrics['cost_per_1000']:.1f} per 1,000 decisions is above the ceiling "
            f"{config.gate.max_cost_per_1000}"
        )
    reasons += comparison_reasons(comparison, config.gate)
    notes = [] if comparison.get("possible") else [f"not compared with a champion: {comparison.get('reason')}"]
    decision.update(
        {
            "passed": not reasons,
            "reasons": reasons,
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
    report = storage.read_bytes(f"{key}/{REPORT}").decode()
    colour = "#1a7f37" if decision["passed"] else "#cf222e"
    verdict = "PASSED" if decision["passed"] else "FAILED"
    items = "".join(f"<li>{html.escape(r)}</li>" for r in reasons + notes)
    section = (
        f'<h2 style="color:{colour}">Gate {verdict}</h2>'
        f"<ul>{items or '<li>every floor, limit and comparison holds</li>'}</ul>"
    )
    if GATE_START in report and GATE_END in report:  # replace the section: re-gating never stacks verdicts
        head, rest = report.split(GATE_START, 1)
        report = head + GATE_START + section + GATE_END + rest.split(GATE_END, 1)[1]
    storage.write_bytes(f"{key}/{REPORT}", report.encode())
    return {
        "version": version,
        "passed": decision["passed"],
        "reasons": decision["reasons"],
        "metrics": {k: round(v, 4) for k, v in decision["metrics"].items()},
        "gate": storage.uri(f"{key}/{registry.GATE}"),
        "evaluation_report": storage.uri(f"{key}/{REPORT}"),
    }
