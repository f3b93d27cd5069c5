"""The drift report: one self-contained HTML page per run (plots embedded as PNG, no
external assets, readable offline)."""

from __future__ import annotations

import base64
import html
import io
import math

import numpy as np
import pandas as pd

from pipeline.monitoring.profile import SCORE_COLUMN, category_values, numeric_values


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _numeric_panel(ax, ref: np.ndarray, cur: np.ndarray, title: str) -> None:
    both = np.concatenate([ref, cur]) if len(cur) else ref
    lo, hi = np.quantile(both, [0.005, 0.995]) if len(both) else (0, 1)
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    discrete = len(np.unique(ref)) <= 25
    if discrete:
        values = np.unique(np.concatenate([ref, cur]))
        values = values[(values >= lo) & (values <= hi)]
        r = [np.mean(ref == v) for v in values]
        c = [np.mean(cur == v) if len(cur) else 0 for v in values]
        x = np.arange(len(values))
        ax.bar(x - 0.2, r, 0.4, label="reference", color="#8da0cb")
        ax.bar(x + 0.2, c, 0.4, label="current", color="#fc8d62")
        ax.set_xticks(x, [f"{v:g}" for v in values], fontsize=7)
    else:
        bins = np.linspace(lo, hi, 31)
        ax.hist(np.clip(ref, lo, hi), bins=bins, density=True, alpha=0.55, label="reference", color="#8da0cb")
        if len(cur):
            ax.hist(np.clip(cur, lo, hi), bins=bins, density=True, alpha=0.55, label="current", color="#fc8d62")
        ax.tick_params(labelsize=7)
    ax.set_title(title, fontsize=9)


def _categorical_panel(ax, counts: dict, cur: list, title: str) -> None:
    present = [v for v in cur if v is not None]
    cats = sorted(set(counts) | set(present))
    total = sum(counts.values()) or 1
    r = [counts.get(c, 0) / total for c in cats]
    c = [present.count(k) / len(present) if present else 0 for k in cats]
    x = np.arange(len(cats))
    ax.bar(x - 0.2, r, 0.4, label="reference", color="#8da0cb")
    ax.bar(x + 0.2, c, 0.4, label="current", color="#fc8d62")
    ax.set_xticks(x, cats, fontsize=7)
    ax.set_title(title, fontsize=9)


def _feature_figure(prof, sample, current, scores, primary: dict) -> str:
    plt = _plt()
    ranked = sorted(prof.get("importance", {}).items(), key=lambda kv: -kv[1]["mean"])
    features = [f for f, _ in ranked if f in prof["columns"]]
    features += [f for f in prof["columns"] if f not in features]
    panels = features + [SCORE_COLUMN]
    cols = 4
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(16, 2.6 * rows))
    axes = np.atleast_1d(axes).ravel()
    for ax, col in zip(axes, panels, strict=False):  # the grid may have spare axes
        row = primary.get(col)
        flag = ""
        if row:
            flag = f"  {row['statistic']} {row['value']:.3f}" + ("  DRIFT" if row["calibrated_flag"] else "")
        if col == SCORE_COLUMN:
            _numeric_panel(
                ax,
                sample[SCORE_COLUMN],
                scores if scores is not None else np.array([]),
                "model score (prediction drift)" + flag,
            )
        elif prof["columns"][col]["kind"] == "numeric":
            cur = numeric_values(current[col]) if col in current else np.array([])
            _numeric_panel(ax, sample.get(col, np.array([])), cur[~np.isnan(cur)], col + flag)
        else:
            categories = category_values(current[col]) if col in current else []
            _categorical_panel(ax, prof["columns"][col]["counts"], categories, col + flag)
        if row and row["calibrated_flag"]:
            ax.set_facecolor("#fff0f0")
    for ax in axes[len(panels) :]:
        ax.axis("off")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


def _performance_figure(perf: dict, floors: dict) -> str | None:
    if not perf["per_day"]:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(14, 3.6))
    days = [pd.Timestamp(e["day"]) for e in perf["per_day"]]
    for ax, metric in zip(axes, ("roc_auc", "precision"), strict=True):
        est = [e["estimated"][metric] for e in perf["per_day"]]
        real = [e["realized"][metric] if e["realized"] else None for e in perf["per_day"]]
        ax.plot(days, est, "o--", label="estimated (CBPE)", color="#8da0cb")
        ax.plot(days, [np.nan if v is None else v for v in real], "o-", label="realized (labels)", color="#1b9e77")
        if metric in floors:
            ax.axhline(floors[metric], color="#cf222e", ls=":", label=f"floor {floors[metric]}")
        ax.set_title(f"{metric} per scored day", fontsize=10)
        ax.tick_params(axis="x", labelrotation=45, labelsize=7)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, bool):
        return "yes" if v else ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def _table(rows: list[dict], columns: list[tuple[str, str]], highlight=None) -> str:
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label in columns)
    body = []
    for r in rows:
        style = ' style="background:#ffe3e3"' if highlight and highlight(r) else ""
        body.append(f"<tr{style}>" + "".join(f"<td>{_fmt(r.get(k))}</td>" for k, _ in columns) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def render(
    record: dict,
    prof: dict,
    sample: dict,
    current: pd.DataFrame,
    scores,
    drift_rows: list[dict],
    quality_rows: list[dict],
    perf: dict,
    ranges,
) -> str:
    primary = {r["feature"]: r for r in drift_rows if r["is_primary"]}
    verdict_colour = "#cf222e" if record["retrain"] or record["alerts"] else "#1a7f37"
    figures = ""
    if len(current):
        figures += (
            f"<h2>Reference vs current, by feature (most important first)</h2>"
            f'<img alt="per-feature distributions" src="data:image/png;base64,'
            f'{_feature_figure(prof, sample, current, scores, primary)}">'
        )
    perf_png = _performance_figure(perf, {})
    perf_rows = []
    for e in perf["per_day"]:
        perf_rows.append(
            {
                "day": e["day"],
                "week": e["week"],
                **{f"est_{k}": e["estimated"][k] for k in ("roc_auc", "precision", "recall", "positive_rate")},
                **{
                    f"real_{k}": (e["realized"] or {}).get(k)
                    for k in ("roc_auc", "precision", "recall", "positive_rate", "rows")
                },
            }
        )
    stat_cols = [
        ("feature", "feature"),
        ("importance_rank", "importance rank"),
        ("statistic", "statistic"),
        ("value", "value"),
        ("noise_p95", "noise floor p95"),
        ("calibrated_pvalue", "calibrated p"),
        ("scipy_pvalue", "scipy p"),
        ("fixed_threshold", "fixed rule"),
        ("fixed_flag", "fixed flag"),
        ("is_primary", "primary"),
        ("calibrated_flag", "calibrated flag"),
    ]
    ordered = sorted(drift_rows, key=lambda r: (r["kind"] == "prediction", r["importance_rank"] or 999, r["feature"]))
    e, r = record.get("estimated") or {}, record.get("realized") or {}
    return f"""<!doctype html><html><head><meta charset="utf-8">
<title>Drift {html.escape(record["model"])} as of {record["as_of"]}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1300px}}td,th{{padding:2px 8px;text-align:left;font-size:13px}}
table{{border-collapse:collapse;margin-bottom:1em}}tr:nth-child(even){{background:#f6f6f6}}img{{max-width:100%}}</style>
</head><body>
<h1>Drift monitoring — {html.escape(record["model"])} as of {record["as_of"]}</h1>
<p>Champion <code>{html.escape(record["champion_version"])}</code>; window {" .. ".join(record["window"])}
({record["rows"]} scored rows); reference: {prof["rows"]} training rows
({"exact sorted sample" if prof["exact"] else "uniform sample of " + str(prof["sample_cap"])}).
Run <code>{html.escape(str(record.get("run_id") or "CLI (no Airflow run)"))}</code>.</p>
<h2 style="color:{verdict_colour}">Decision: {html.escape(record["reason"])}</h2>
<ul>{"".join(f"<li>{html.escape(a)}</li>" for a in record["alerts"]) or "<li>no alerts</li>"}</ul>
<p>Flagging used by the policy: <b>{record["flagging"]}</b>. Drifted (calibrated):
{html.escape(", ".join(record["drifted_features"]) or "none")}. Drifted (fixed thresholds):
{html.escape(", ".join(record["drifted_features_fixed"]) or "none")}. Important features:
{html.escape(", ".join(record["important_features"]))}. Prediction drift: {
        "yes" if record["prediction_drift"] else "no"
    }.</p>
<p>{html.escape(performance_text(e, r, record))}</p>
{figures}
<h2>Drift statistics (fixed and calibrated views)</h2>
<p>{html.escape(calibration_text(record.get("calibration")))}</p>
{_table(ordered, stat_cols, highlight=lambda x: x["calibrated_flag"])}
{_multivariate_section(record.get("multivariate_drift"), prof, sample, current)}
{_segments_section(record.get("segments"))}
{_attribution_section(record.get("attribution_drift"))}
<h2>Data quality</h2>
{
        _table(
            quality_rows,
            [
                ("feature", "column / day"),
                ("statistic", "check"),
                ("value", "value"),
                ("reference", "reference"),
                ("limit", "limit"),
                ("break", "break"),
            ],
            highlight=lambda x: x["break"],
        )
    }
<h2>Performance over time</h2>
{f'<img alt="performance over time" src="data:image/png;base64,{perf_png}">' if perf_png else "<p>No scored days.</p>"}
{
        _table(
            perf_rows,
            [
                ("day", "day"),
                ("week", "week"),
                ("est_roc_auc", "est. ROC AUC"),
                ("real_roc_auc", "real ROC AUC"),
                ("est_precision", "est. precision"),
                ("real_precision", "real precision"),
                ("est_recall", "est. recall"),
                ("real_recall", "real recall"),
                ("est_positive_rate", "positive rate"),
                ("real_rows", "labelled rows"),
            ],
        )
    }
<h2>Days in the window</h2>
{
        _table(
            record["days"],
            [("day", "day"), ("status", "status"), ("rows", "rows")],
            highlight=lambda x: x["status"] != "scored",
        )
    }
</body></html>"""


def _multivariate_section(joint: dict | None, prof: dict, sample: dict, current: pd.DataFrame) -> str:
    from pipeline.monitoring import multivariate

    head = "<h2>Multivariate drift (PCA reconstruction error)</h2>"
    if not joint:
        return f"{head}<p>{html.escape(multivariate.describe(None))}.</p>"
    model = prof["multivariate"]
    values = np.column_stack([numeric_values(current[c]) for c in model["columns"]])
    errors = np.sqrt(multivariate.squared_residuals(model, values).sum(axis=1))
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 2.8))
    _numeric_panel(ax, sample[multivariate.ERROR_COLUMN], errors, "per-row reconstruction error (std. units)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    text = (
        f"{multivariate.describe(joint)}. {joint['components']} components keep "
        f"{model['explained_variance']:.0%} of the variance of {joint['columns']} standardised numeric features; "
        f"noise floor p95 {joint['noise_p95']:.3f} at n={joint['rows']}; a flag needs p < fdr and "
        f"+{joint['min_increase']:.0%}. It sees changes in how features move together that no single column shows."
    )
    drivers = _table(
        joint["drivers"],
        [("feature", "feature"), ("residual_increase", "squared residual increase"), ("share", "share of increase")],
    )
    return (
        f"{head}<p>{html.escape(text[0].upper() + text[1:])}</p>"
        f'<img alt="reconstruction error" src="data:image/png;base64,{_png(fig)}">{drivers}'
    )


def _segments_section(seg: dict | None) -> str:
    head = "<h2>Segments: performance and fairness by group</h2>"
    if not seg or not seg["columns"]:
        return f"{head}<p>No segment columns, or no scored rows.</p>"
    parts = [head, "<ul>"]
    parts += [f"<li><b>{html.escape(b)}</b></li>" for b in seg["breaches"]] or ["<li>no breaches</li>"]
    parts.append("</ul><p>Groups under the minimum size are shown as too small and not judged.</p>")
    for column, entry in seg["columns"].items():
        parts.append(f"<h3>{html.escape(column)}</h3>")
        if "error" in entry:
            parts.append(f"<p>{html.escape(entry['error'])}</p>")
            continue
        parts.append(
            _table(
                entry["estimated"],
                [
                    ("group", "group"),
                    ("rows", "window rows"),
                    ("est_roc_auc", "est. ROC AUC"),
                    ("est_recall", "est. TPR"),
                    ("too_small", "too small"),
                ],
            )
        )
        for week, r in entry["weeks"].items():
            parts.append(
                f"<p>Week {html.escape(week)} (labelled; TPR at training: "
                f"<code>{html.escape(str(r.get('reference_version')))}</code>, the version that scored it): "
                "demographic-parity ratio "
                f"{_fmt(r['demographic_parity_ratio'])}, equal-opportunity difference "
                f"{_fmt(r['equal_opportunity_difference'])}</p>"
            )
            parts.append(
                _table(
                    r["groups"],
                    [
                        ("group", "group"),
                        ("count", "labelled rows"),
                        ("roc_auc", "ROC AUC"),
                        ("tpr", "TPR"),
                        ("reference_tpr", "TPR at training"),
                        ("tpr_drop", "TPR drop"),
                        ("selection_rate", "selection rate"),
                        ("too_small", "too small"),
                    ],
                    highlight=lambda g, c=column, w=week: any(
                        b.startswith(f"segment {c}={g['group']} week {w}:") for b in seg["breaches"]
                    ),
                )
            )
    return "".join(parts)


def _attribution_section(moved: dict | None) -> str:
    from pipeline.monitoring import attribution

    head = "<h2>Attribution drift: how much each feature moves the scores</h2>"
    if not moved:
        return f"{head}<p>Not measured (no stored attribution reference, or no scored rows).</p>"
    text = (
        f"Mean |score change| when a feature alone is shuffled, on {moved['rows']} window rows, against "
        f"the holdout's at training; flagged beyond {attribution.SIGMAS:g} noise standard deviations (the spread of {attribution.RESAMPLES} reference "
        f"measurements, scaled to the window) and {attribution.MIN_CHANGE:.0%} of the reference. Flagged: {', '.join(moved['flagged']) or 'none'}."
    )
    columns = [
        ("feature", "feature"),
        ("reference", "at training"),
        ("current", "now"),
        ("change", "change"),
        ("noise_sd", "noise sd"),
        ("distance", "distance (sd)"),
        ("flagged", "flagged"),
    ]
    return f"{head}<p>{html.escape(text)}</p>" + _table(
        moved["features"][:12], columns, highlight=lambda r: r["flagged"]
    )


def performance_text(estimated: dict, realized: dict, record: dict) -> str:
    """The performance sentence of the report: figures where there are some, and what is missing
    and why where there are none (never a placeholder)."""
    parts = []
    names = {"roc_auc": "ROC AUC", "precision": "precision", "recall": "recall"}
    figures = [f"{label} {_fmt(estimated[m])}" for m, label in names.items() if estimated.get(m) is not None]
    if figures:
        parts.append(f"Estimated performance (CBPE) of the window: {', '.join(figures)}.")
    else:
        parts.append("No estimated performance: the window has no scored rows.")
    coverage = record.get("drift_coverage") or {}
    labelled = ""
    if coverage:
        due, newest = (
            coverage["training_window_ends"],
            record.get("newest_labelled_day", coverage["training_window_ends"]),
        )
        labelled = f" (labels are due for days up to {due}; the newest labelled day is {newest or 'none'}"
        labelled += "; labels are late: see the freshness check)" if newest is None or newest < due else ")"
    if realized.get("rows"):
        parts.append(
            f"Realized performance on {realized['rows']} labelled rows: ROC AUC {_fmt(realized.get('roc_auc'))}."
        )
    else:
        parts.append(f"No realized performance yet: none of the scored days has labels{labelled}.")
    if coverage and not coverage.get("inside_training_window"):
        parts.append(
            f"A retraining now would train on days up to {coverage['training_window_ends']}: "
            f"{coverage['labelled_days']} of the {coverage['days']} monitored days "
            f"({coverage['drift_period'][0]}..{coverage['drift_period'][1]}) are labelled."
        )
    waiting = record.get("waiting_for_labels")
    if waiting:
        parts.append(
            f"Waiting for labels since {waiting['since']} ({'; '.join(waiting['triggers'])} over "
            f"{waiting['drift_period'][0]}..{waiting['drift_period'][1]})."
        )
    return " ".join(parts)


def calibration_text(calibration: dict | None) -> str:
    if not calibration:
        return "Calibrated p-values: not computed (the window has no scored rows)."
    return (
        f"Calibrated p: share of {calibration['resamples']} two-sample bootstrap resamples of the reference "
        f"(at n={calibration['sample_size']}) with a statistic at least as large; the primary statistic's "
        "p-values go through Benjamini-Hochberg across features, and a flag also needs the minimum effect size."
    )
