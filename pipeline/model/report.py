"""The evaluation report people open: metrics beside the champion's, curves, cost, fairness,
importance, and the gate's verdict, rendered whole from evaluation.json, figures.json and gate.json."""

from __future__ import annotations

import base64
import html
import io

import numpy as np

REPORT = "evaluation.html"
FIGURES = "figures.json"


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
    from sklearn import metrics as skm

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


def figures(y, curves: dict[str, tuple[np.ndarray, float]], manifest: dict, fairness: dict, importance: dict) -> dict:
    """The report's plots as base64 PNGs (stored beside it, so the gate re-renders without data)."""
    return {
        "curves": _curves_png(y, curves),
        "cost": _cost_png(manifest.get("threshold_selection", {})),
        "fairness": _fairness_png(fairness),
        "importance": _importance_png(importance),
    }


def _verdict(gate: dict | None) -> str:
    if gate is None:
        return "<p><i>Not gated yet.</i></p>"
    colour, verdict = ("#1a7f37", "PASSED") if gate["passed"] else ("#cf222e", "FAILED")
    items = "".join(f"<li>{html.escape(r)}</li>" for r in gate["reasons"] + gate.get("notes", []))
    return (
        f'<h2 style="color:{colour}">Gate {verdict}</h2>'
        f"<ul>{items or '<li>every floor, limit and comparison holds</li>'}</ul>"
    )


def render_report(manifest: dict, evaluation: dict, figures: dict, gate: dict | None = None) -> str:
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
{_verdict(gate)}
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
