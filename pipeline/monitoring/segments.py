"""Performance and fairness by segment while the model serves.

A model can fail one group while the average holds. For each segment column
(``monitoring.segments.columns`` and the sensitive attributes, grouped as the gate groups them:
``fairness.bins``) every run reports, per group:
  * estimated performance (CBPE) on the window's scored rows (no labels needed);
  * realized performance on each ISO week's labelled rows (labels known by the run date):
    rows, ROC AUC, TPR, selection rate; and the week's fairness disparities (demographic-parity
    ratio, equal-opportunity difference) against the gate's limits (``fairness``);
  * a group's realized TPR against its TPR on the holdout when the model was trained: a drop of
    more than ``max_tpr_drop`` breaches even when the groups still look alike.
Groups under ``fairness.min_group_size`` rows are reported as too small, never judged or dropped.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from pipeline.core import layout
from pipeline.core.settings import PipelineConfig
from pipeline.core.storage import Storage
from pipeline.model.fairness import fairness_breaches, fairness_report, group_labels
from pipeline.model.features import target_vector
from pipeline.monitoring import performance


def segment_columns(config: PipelineConfig) -> list[str]:
    return list(dict.fromkeys([*config.monitoring.segments.columns, *config.dataset.sensitive_attributes]))


def known_labels(config: PipelineConfig, storage: Storage, day: dt.date, as_of: dt.date) -> pd.DataFrame | None:
    """The day's labels if they had arrived by `as_of` (so a rerun of an old week sees what it saw)."""
    key = layout.labels_partition(config.dataset.name, day)
    if not storage.partition_exists(key):
        return None
    if storage.read_manifest(key).get("known_as_of", "9999") > as_of.isoformat():
        return None
    return storage.read_partition(key).to_pandas()


def scored_rows(
    config: PipelineConfig, storage: Storage, days: list[dt.date], as_of: dt.date, id_column: str
) -> pd.DataFrame:
    """One row per scored row of `days`: day, ISO week, segment columns, score, threshold, and the
    label where it had arrived by `as_of` (`y`, NaN otherwise)."""
    columns, parts = segment_columns(config), []
    for day in days:
        pred_key = layout.predictions_partition(config.model_name, day)
        raw_key = layout.raw_partition(config.dataset.name, day)
        if not (storage.partition_exists(pred_key) and storage.partition_exists(raw_key)):
            continue
        preds = storage.read_partition(pred_key).select([id_column, "score", "model_version"]).to_pandas()
        raw = storage.read_partition(raw_key)
        raw = raw.select([id_column, *[c for c in columns if c in raw.schema.names]]).to_pandas()
        frame = preds.merge(raw, on=id_column, how="inner")
        frame["y"] = np.nan
        labels = known_labels(config, storage, day, as_of)
        if labels is not None:
            target = config.dataset.target
            y = pd.Series(target_vector(labels[target.column], target.positive_class), index=labels[id_column])
            frame["y"] = frame[id_column].map(y)
        iso = day.isocalendar()
        frame["day"], frame["week"] = day.isoformat(), f"{iso.year}-W{iso.week:02d}"
        frame["threshold"] = storage.read_manifest(pred_key)["threshold"]
        parts.append(frame)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def trained_fairness(storage: Storage, model: str):
    """Per version, the fairness report of its evaluation on the holdout (cached; {} without one)."""
    cache: dict[str, dict] = {}

    def of(version: str) -> dict:
        if version not in cache:
            key = f"{layout.model_version(model, version)}/evaluation.json"
            cache[version] = storage.read_json(key).get("fairness", {}) if storage.exists(key) else {}
        return cache[version]

    return of


def segment_report(
    config: PipelineConfig, rows: pd.DataFrame, window: list[dt.date], calibrate, trained_fairness_of
) -> dict:
    """Per segment column: groups of the window (estimated) and of each labelled week (realized),
    the weeks' disparities, and the breaches (sentences naming column, group, week and limit). A
    week's TPRs are compared with those at training of the version that scored most of its rows
    (`trained_fairness_of(version)`): a day scored before a promotion keeps its model."""
    fair = config.fairness
    out: dict = {"columns": {}, "breaches": []}
    if rows.empty:
        return out
    in_window = rows["day"].isin([d.isoformat() for d in window]).to_numpy()
    for column in segment_columns(config):
        if column not in rows.columns:
            out["columns"][column] = {"error": f"column {column} is not in the scored days' raw partitions"}
            continue
        groups = group_labels(rows[column], fair.bins.get(column)).to_numpy()
        estimated = []
        for g in sorted(set(groups[in_window])):
            mask = in_window & (groups == g)
            scores = rows["score"].to_numpy()[mask]
            est = performance.estimated_metrics(calibrate(scores), scores, float(rows["threshold"].iloc[-1]))
            estimated.append(
                {
                    "group": g,
                    "rows": int(mask.sum()),
                    "too_small": bool(mask.sum() < fair.min_group_size),
                    "est_roc_auc": est["roc_auc"],
                    "est_recall": est["recall"],
                }
            )
        weeks = {}
        for week, part in rows[rows["y"].notna()].groupby("week", sort=True):
            version = str(part["model_version"].mode().iloc[0])
            trained = (trained_fairness_of(version).get(column) or {}).get("groups", [])
            weeks[str(week)] = _week(
                column, str(week), part, {g["group"]: g.get("tpr") for g in trained}, config, out["breaches"]
            )
            weeks[str(week)]["reference_version"] = version
        out["columns"][column] = {"estimated": estimated, "weeks": weeks}
    return out


def _week(column: str, week: str, part: pd.DataFrame, reference: dict, config: PipelineConfig, breaches: list) -> dict:
    """One labelled week of one segment column: the gate's fairness report, each group's ROC AUC and
    its TPR against training. A TPR drop breaches only when it exceeds `max_tpr_drop` and a one-sided
    binomial test (Bonferroni over the groups) says the group's positives could hardly have been
    caught so rarely at its training TPR: small groups' noise does not page anyone."""
    from scipy.stats import binom

    fair, limits = config.fairness, config.monitoring.segments
    y = part["y"].to_numpy(dtype="int64")
    scores = part["score"].to_numpy()
    pred = scores >= part["threshold"].to_numpy()
    report = fairness_report(part, y, pred, (column,), fair)[column]
    labels = group_labels(part[column], fair.bins.get(column)).to_numpy()
    alpha = config.monitoring.fdr / max(1, len(report["groups"]))
    for g in report["groups"]:
        mask = labels == g["group"]
        positives, caught = int(y[mask].sum()), int((pred[mask] & (y[mask] == 1)).sum())
        g["positives"] = positives
        g["roc_auc"] = performance.realized_metrics(y[mask], scores[mask], 0.5)["roc_auc"]
        g["reference_tpr"] = reference.get(g["group"])
        g["tpr_drop"] = g["tpr_pvalue"] = None
        if g["reference_tpr"] is None or g["tpr"] is None:
            continue
        g["tpr_drop"] = g["reference_tpr"] - g["tpr"]
        g["tpr_pvalue"] = float(binom.cdf(caught, positives, g["reference_tpr"]))
        if not g["too_small"] and g["tpr_drop"] > limits.max_tpr_drop and g["tpr_pvalue"] < alpha:
            breaches.append(
                f"segment {column}={g['group']} week {week}: TPR {g['tpr']:.3f} vs {g['reference_tpr']:.3f} at "
                f"training (drop {g['tpr_drop']:.3f} > {limits.max_tpr_drop}, {caught} of {positives} positives "
                f"caught, binomial p {g['tpr_pvalue']:.2g}) on {g['count']} labelled rows"
            )
    breaches += [f"week {week}: {b}" for b in _credible(fairness_breaches({column: report}, fair), report, fair, alpha)]
    return report


def _credible(found: list[str], report: dict, fair, alpha: float) -> list[str]:
    """The gate's disparity breaches that a week's sample supports: an equal-opportunity
    difference over the limit counts only when a one-sided z-test of (highest - lowest TPR) > limit
    rejects at `alpha` (a week's small groups swing their TPR by more than the limit by chance)."""
    from scipy.stats import norm

    groups = {g["group"]: g for g in report["groups"]}
    hi, lo = groups.get(report["highest_tpr_group"]), groups.get(report["lowest_tpr_group"])
    kept = []
    for b in found:
        if "equal-opportunity" in b and hi and lo:
            se = np.sqrt(sum(g["tpr"] * (1 - g["tpr"]) / max(g["positives"], 1) for g in (hi, lo)))
            gap = hi["tpr"] - lo["tpr"] - fair.max_equal_opportunity_difference
            if se == 0 or norm.sf(gap / se) >= alpha:
                continue
        kept.append(b)
    return kept


def statistics_rows(report: dict) -> list[dict]:
    """Rows of the run's statistics table: estimated per group over the window, realized per group
    and week (too-small groups included, flagged by their name)."""
    out = []
    for column, entry in report["columns"].items():
        for g in entry.get("estimated", []):
            feature = f"{column}={g['group']}{' (too small)' if g['too_small'] else ''}"
            for metric in ("est_roc_auc", "est_recall"):
                if g[metric] is not None:
                    out.append(
                        {
                            "category": "segment_estimated",
                            "feature": feature,
                            "statistic": metric[4:],
                            "value": g[metric],
                        }
                    )
        for week, r in entry.get("weeks", {}).items():
            for g in r["groups"]:
                feature = f"{column}={g['group']} week {week}{' (too small)' if g['too_small'] else ''}"
                for metric in ("tpr", "selection_rate", "roc_auc"):
                    if g.get(metric) is not None:
                        out.append(
                            {
                                "category": "segment_realized",
                                "feature": feature,
                                "statistic": metric,
                                "value": float(g[metric]),
                                "reference_value": g["reference_tpr"] if metric == "tpr" else None,
                            }
                        )
    return out
