"""The weekly monitoring run against storage: read the window's scored days, compute drift,
quality and performance against the champion's reference profile, apply the policy, and
write statistics (Parquet), the HTML report and the decision (JSON, written last: a run
without a decision record did not complete).

    monitoring/<model>/statistics/dt=<as_of>/part-00000.parquet   one row per feature x statistic
    monitoring/<model>/reports/dt=<as_of>.html
    monitoring/<model>/decisions/dt=<as_of>.json
    monitoring/<model>/calibration/<version>/n=<size>.parquet      cached noise floors

A rerun for the same date replaces all three.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import time
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.core import layout
from pipeline.core.errors import MonitoringError
from pipeline.core.settings import PipelineConfig
from pipeline.core.storage import Storage
from pipeline.data.snapshot import labelled_window
from pipeline.data.source import Schema
from pipeline.model import registry
from pipeline.model.features import target_vector
from pipeline.monitoring import attribution, drift, multivariate, performance, policy, quality, report, segments
from pipeline.monitoring import profile as profile_mod
from pipeline.monitoring.findings import read_decision
from pipeline.monitoring.freshness import newest_day
from pipeline.ops import progress

log = logging.getLogger(__name__)

STATISTICS_SCHEMA = pa.schema(
    [
        ("as_of", pa.date32()),
        ("model", pa.string()),
        ("model_version", pa.string()),
        ("run_id", pa.string()),
        ("category", pa.string()),
        ("feature", pa.string()),
        ("statistic", pa.string()),
        ("value", pa.float64()),
        ("reference_value", pa.float64()),
        ("noise_p95", pa.float64()),
        ("scipy_pvalue", pa.float64()),
        ("calibrated_pvalue", pa.float64()),
        ("fixed_threshold", pa.string()),
        ("fixed_flag", pa.bool_()),
        ("is_primary", pa.bool_()),
        ("calibrated_flag", pa.bool_()),
        ("importance_rank", pa.int32()),
        ("n_current", pa.int64()),
    ]
)


def load_reference(storage: Storage, model: str, version: str) -> tuple[dict, dict[str, np.ndarray]]:
    key = layout.model_version(model, version)
    try:
        prof = storage.read_json(f"{key}/{profile_mod.PROFILE}")
        sample = profile_mod.read_sample(storage.read_bytes(f"{key}/{profile_mod.SAMPLE}"))
    except FileNotFoundError as exc:
        raise MonitoringError(
            f"{model} {version} has no reference profile ({storage.uri(key)}/{profile_mod.PROFILE}); "
            "it was trained before drift monitoring existed: retrain it "
            "(training_pipeline) to get one"
        ) from exc
    return prof, sample


def cached_noise_floors(
    storage: Storage, config: PipelineConfig, version: str, prof: dict, sample: dict, n_current: int
) -> tuple[dict, int, bool]:
    size = drift.quantised_size(n_current)
    key = layout.monitoring_calibration(config.model_name, version, size)
    if storage.exists(key):
        frame = pq.read_table(io.BytesIO(storage.read_bytes(key))).to_pandas()
        floors: dict = {}
        for (col, stat), group in frame.groupby(["column", "statistic"], sort=False):
            floors.setdefault(col, {})[stat] = np.sort(group["value"].to_numpy())
        return floors, size, True
    started = time.monotonic()
    floors = drift.noise_floors(prof, sample, size, config.monitoring)
    parts = [(col, stat, values) for col, stats in floors.items() for stat, values in stats.items()]
    table = pa.table(
        {
            "column": pa.array(np.concatenate([np.full(len(v), c, dtype=object) for c, _, v in parts]), pa.string()),
            "statistic": pa.array(np.concatenate([np.full(len(v), s, dtype=object) for _, s, v in parts]), pa.string()),
            "value": pa.array(np.concatenate([v for _, _, v in parts]), pa.float64()),
        }
    )
    buf = io.BytesIO()
    pq.write_table(table, buf)
    storage.write_bytes(key, buf.getvalue())
    log.info(
        "noise floors for %s at n=%d: %d resamples x %d columns in %.1fs",
        version,
        size,
        config.monitoring.bootstrap_resamples,
        len(floors),
        time.monotonic() - started,
    )
    return floors, size, False


def _scored_day(config: PipelineConfig, storage: Storage, day: dt.date, id_column: str) -> dict:
    ds = config.dataset
    pred_key = layout.predictions_partition(config.model_name, day)
    if storage.partition_exists(pred_key):
        preds = storage.read_partition(pred_key).to_pandas()
        manifest = storage.read_manifest(pred_key)
        raw_key = layout.raw_partition(ds.name, day)
        features = storage.read_partition(raw_key).to_pandas() if storage.partition_exists(raw_key) else None
        if features is not None:
            features = features.merge(preds[[id_column, "score"]], on=id_column, how="inner")
        return {
            "day": day.isoformat(),
            "status": "scored",
            "rows": int(len(preds)),
            "predictions": preds,
            "features": features,
            "threshold": manifest["threshold"],
            "model_version": manifest["model_version"],
        }
    try:
        record = storage.read_json(layout.validation_record(ds.name, day))
    except FileNotFoundError:
        record = None
    if record is not None and not record.get("success"):
        return {"day": day.isoformat(), "status": "quarantined", "rows": 0, "where": record.get("quarantine")}
    return {"day": day.isoformat(), "status": "not_scored", "rows": 0}


def _performance(
    config: PipelineConfig, storage: Storage, as_of: dt.date, id_column: str, prof: dict, window_days: list[dict]
) -> dict:
    m = config.monitoring
    ds = config.dataset
    per_day, pooled_y, pooled_s = [], [], []
    start = as_of - dt.timedelta(days=max(m.performance_window_days, m.window_days))
    day = start
    while day < as_of:
        pred_key = layout.predictions_partition(config.model_name, day)
        if storage.partition_exists(pred_key):
            preds = storage.read_partition(pred_key).to_pandas()
            threshold = storage.read_manifest(pred_key)["threshold"]
            entry = {
                "day": day.isoformat(),
                "week": f"{day.isocalendar().year}-W{day.isocalendar().week:02d}",
                "estimated": performance.estimated_metrics(
                    profile_mod.calibrate(prof, preds["score"]), preds["score"].to_numpy(), threshold
                ),
                "realized": None,
                "_scores": preds["score"].to_numpy(),
            }
            labels = segments.known_labels(config, storage, day, as_of)
            if labels is not None:
                joined = preds.merge(labels, on=id_column, how="inner")
                y = target_vector(joined[ds.target.column], ds.target.positive_class)
                entry["realized"] = performance.realized_metrics(y, joined["score"].to_numpy(), threshold)
                entry["_y"], entry["_lscores"] = y, joined["score"].to_numpy()
                pooled_y.append(y)
                pooled_s.append((joined["score"].to_numpy(), threshold))
            per_day.append(entry)
        day += dt.timedelta(days=1)
    realized = None
    if pooled_y:
        threshold = pooled_s[-1][1]
        realized = performance.realized_metrics(
            np.concatenate(pooled_y), np.concatenate([s for s, _ in pooled_s]), threshold
        )
    scored = [d for d in window_days if d["status"] == "scored"]
    estimated = None
    if scored:
        scores = np.concatenate([d["predictions"]["score"].to_numpy() for d in scored])
        estimated = performance.estimated_metrics(profile_mod.calibrate(prof, scores), scores, scored[-1]["threshold"])
    # Per ISO week, pooled over the week's rows (AUC is not additive over days).
    weeks: dict[str, dict] = {}
    for entry in per_day:
        w = weeks.setdefault(entry["week"], {"days": 0, "labelled_days": 0, "scores": [], "y": [], "lscores": []})
        w["days"] += 1
        w["scores"].append(entry.pop("_scores"))
        if entry["realized"] is not None:
            w["labelled_days"] += 1
            w["y"].append(entry.pop("_y"))
            w["lscores"].append(entry.pop("_lscores"))
        entry.pop("_y", None), entry.pop("_lscores", None)
    threshold = prof["threshold"]
    for w in weeks.values():
        scores = np.concatenate(w.pop("scores"))
        w["estimated"] = performance.estimated_metrics(profile_mod.calibrate(prof, scores), scores, threshold)
        ys, ls = w.pop("y"), w.pop("lscores")
        w["realized"] = performance.realized_metrics(np.concatenate(ys), np.concatenate(ls), threshold) if ys else None
    return {"per_day": per_day, "realized": realized, "estimated": estimated, "weeks": weeks}


def _statistics_table(rows: list[dict]) -> pa.Table:
    columns = {f.name: [r.get(f.name) for r in rows] for f in STATISTICS_SCHEMA}
    return pa.Table.from_pydict(columns, schema=STATISTICS_SCHEMA)


def run_monitoring(config: PipelineConfig, storage: Storage, as_of: dt.date, run_id: str | None = None) -> dict:
    m = config.monitoring
    model = config.model_name
    version = registry.get_alias(storage, model)
    if not version:
        raise MonitoringError(f"model {model} has no champion to monitor: run training_pipeline first")
    version = version["version"]
    manifest = registry.read_manifest(storage, model, version)
    id_column = manifest["schema"]["id_column"]
    prof, sample = load_reference(storage, model, version)
    stage = "drift monitor"
    progress.start(stage, 5)
    progress.advance(stage, "read the scored days")

    window = [as_of - dt.timedelta(days=i) for i in range(m.window_days, 0, -1)]
    days = [_scored_day(config, storage, d, id_column) for d in window]
    scored = [d for d in days if d["status"] == "scored" and d["features"] is not None]
    current = pd.concat([d["features"] for d in scored], ignore_index=True) if scored else pd.DataFrame()
    scores = current["score"].to_numpy() if len(current) else None
    log.info(
        "monitoring %s %s as of %s: %d of %d days scored, %d rows",
        model,
        version,
        as_of,
        len(scored),
        len(days),
        len(current),
    )

    drift_rows: list[dict[str, Any]] = []
    drifted: dict[str, list[str]] = {"calibrated": [], "fixed": []}
    calibration = None
    progress.advance(stage, "drift statistics and noise floors")
    if len(current):
        floors, size, cached = cached_noise_floors(storage, config, version, prof, sample, len(current))
        calibration = {"sample_size": size, "cached": cached, "resamples": m.bootstrap_resamples}
        drift_rows, drifted = drift.drift_rows(prof, sample, current, scores, floors, m)
    joint = multivariate.for_window(prof, sample, current, m)
    moved = None
    if prof.get("attribution") and len(current):
        estimator, _ = registry.load_model(storage, model, version)
        moved = attribution.for_window(estimator, Schema.from_dict(manifest["schema"]), prof, current, m.random_state)
    q_rows, breaks = (
        quality.quality_rows(prof, current, dict(config.validation.ranges), m.quality) if len(current) else ([], [])
    )
    d_rows, d_breaks = quality.day_rows(days, prof["rows_per_day_median"], m.quality)
    breaks = breaks + d_breaks
    progress.advance(stage, "quality and performance")
    perf = _performance(config, storage, as_of, id_column, prof, days)
    span = max(m.performance_window_days, m.window_days)
    rows = segments.scored_rows(
        config, storage, [as_of - dt.timedelta(days=i) for i in range(span, 0, -1)], as_of, id_column
    )
    trained = segments.trained_fairness(storage, model)
    seg = segments.segment_report(config, rows, window, lambda s: profile_mod.calibrate(prof, s), trained)
    progress.advance(stage, "decision")

    history = []
    for key in storage.list_keys(layout.monitoring_decisions(model)):
        if key.endswith(".json"):
            history.append(storage.read_json(key))
    decision = policy.decide(
        m.policy,
        as_of,
        prof["important_features"],
        drifted,
        breaks,
        perf["realized"],
        perf["estimated"],
        history,
        drift_period=(window[0], window[-1]),
        labelled_until=labelled_window(config, as_of)[-1],
        multivariate=joint,
        segment_breaches=seg["breaches"],
    )

    stat_rows = []
    base = {"as_of": as_of, "model": model, "model_version": version, "run_id": run_id, "n_current": len(current)}
    for r in drift_rows:
        stat_rows.append(
            {
                **base,
                **r,
                "category": "prediction_drift" if r["kind"] == "prediction" else "drift",
                "reference_value": None,
            }
        )
    if joint:
        stat_rows.append({**base, **multivariate.statistics_row(joint)})
    stat_rows += [{**base, **r} for r in segments.statistics_rows(seg)]
    stat_rows += [{**base, **r} for r in attribution.statistics_rows(moved)] if moved else []
    for r in q_rows + d_rows:
        stat_rows.append(
            {
                **base,
                "category": "quality",
                "feature": r["feature"],
                "statistic": r["statistic"],
                "value": r["value"],
                "reference_value": r["reference"],
                "fixed_threshold": f"limit {r['limit']}",
                "fixed_flag": r["break"],
                "calibrated_flag": r["break"],
            }
        )
    for entry in perf["per_day"]:
        for kind in ("realized", "estimated"):
            for metric, value in (entry[kind] or {}).items():
                if metric != "rows" and value is not None:
                    stat_rows.append(
                        {
                            **base,
                            "category": f"performance_{kind}",
                            "feature": f"day {entry['day']}",
                            "statistic": metric,
                            "value": float(value),
                        }
                    )
    for week, w in perf["weeks"].items():
        for kind in ("realized", "estimated"):
            for metric, value in (w[kind] or {}).items():
                if metric != "rows" and value is not None:
                    stat_rows.append(
                        {
                            **base,
                            "category": f"performance_{kind}",
                            "feature": f"week {week}",
                            "statistic": metric,
                            "value": float(value),
                        }
                    )
    progress.advance(stage, "statistics and report")
    stats_key = layout.monitoring_statistics(model, as_of)
    storage.write_partition(
        stats_key,
        {"part-00000.parquet": _statistics_table(stat_rows)},
        manifest={"model": model, "model_version": version, "as_of": as_of.isoformat()},
    )

    report_key = layout.monitoring_report(model, as_of)
    decision_key = layout.monitoring_decision(model, as_of)
    record = {
        **decision,
        "model": model,
        "champion_version": version,
        "run_id": run_id,
        "window": [window[0].isoformat(), window[-1].isoformat()],
        "days": [{k: d[k] for k in ("day", "status", "rows")} for d in days],
        "rows": int(len(current)),
        "realized": perf["realized"],
        "estimated": perf["estimated"],
        "performance_by_week": perf["weeks"],
        "segments": seg,
        # What has arrived, next to what is due (drift_coverage): labels that stopped show here.
        "newest_labelled_day": (
            n.isoformat() if (n := newest_day(storage, layout.labels_root(config.dataset.name))) else None
        ),
        "attribution_drift": moved,
        "prediction_drift": any(r["calibrated_flag"] for r in drift_rows if r["kind"] == "prediction"),
        "calibration": calibration,
        "reference_exact": prof["exact"],
        "statistics": storage.uri(stats_key),
        "report": storage.uri(report_key),
        "decided_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    html = report.render(
        record, prof, sample, current, scores, drift_rows, q_rows + d_rows, perf, config.validation.ranges
    )
    storage.write_bytes(report_key, html.encode())
    storage.write_json(decision_key, record)  # last: the run is complete
    from pipeline.model import card

    card.refresh(config, storage, version)  # the drift history while it served
    from pipeline.ops import metrics

    metrics.gauge("drift_flagged_features", len(record["drifted_features"]), model=model)
    metrics.gauge("quality_breaks", len(record["quality_breaks"]), model=model)
    metrics.incr("retraining_triggers", int(bool(record["retrain"])), model=model)
    if record["retrain"]:
        from pipeline.ops import audit

        audit.record(
            storage,
            "retraining_trigger",
            f"{model}: retraining triggered as of {as_of}",
            why=record["reason"],
            run_id=run_id,
            model=model,
            champion_version=version,
            report=record["report"],
            decision=storage.uri(decision_key),
        )
    log.info("%s as of %s: %s", model, as_of, record["reason"])
    progress.finish(stage)
    return {
        "as_of": as_of.isoformat(),
        "model_version": version,
        "retrain": record["retrain"],
        "reason": record["reason"],
        "drifted_features": record["drifted_features"],
        "quality_breaks": len(record["quality_breaks"]),
        "alerts": record["alerts"],
        "report": record["report"],
        "drift_report": record["report"],
        "statistics": record["statistics"],
        "decision": storage.uri(decision_key),
    }


def retraining_trigger(config: PipelineConfig, storage: Storage, as_of: dt.date) -> dict:
    """What a retraining records of the monitoring decision that triggered it."""
    decision, key = read_decision(config, storage, as_of, "to record as the trigger")
    coverage = decision.get("drift_coverage") or {}
    return {
        "decision": storage.uri(key),
        "as_of": decision["as_of"],
        "triggers": decision.get("triggers", []),
        "label_backed": decision.get("label_backed"),
        "drift_period": coverage.get("drift_period"),
        "labelled_drift_days": coverage.get("labelled_days"),
    }
