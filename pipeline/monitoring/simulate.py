"""Demo deliveries with injected drift, and the false-alarm simulation.

:func:`simulate_deliveries` takes each day's rows from the source exactly as ingestion
does, changes them by scenario, and publishes them as that day's raw partition (and the
day's labels, known ``label_delay_days`` later) through ingestion's own publishing code.
Validation and scoring then run on them as on any delivery.

Scenarios:
  none             the day as it is (a baseline week)
  covariate_shift  a numeric column shifted by `strength` reference standard deviations
                   (default: the champion's most important numeric feature), clipped to
                   its validation range so the delivery stays valid
  category_mix     `strength` of the rows moved to another category of a categorical column
  concept_drift    `strength` of the labels flipped; features unchanged
  data_break       a column becomes null (`break_kind: null`) or changes unit (`unit`, x1000)
  correlation_break  the numeric columns (default: all numeric features; or a comma-separated
                   list) each shuffled on their own across `strength` of the day's rows: every
                   column keeps its distribution, how they move together is lost (only the
                   multivariate statistic can see it)
  segment_shift    in one group (`column` as NAME=VALUE; default: the smallest group holding at
                   least 10% of the rows among the categorical sensitive attributes), `strength` of
                   the positives get the other features of a random negative of their group: their
                   labels stay, the model misses them, so the group's TPR falls while the global
                   AUC holds (caught by the segment report once the labels arrive)
  labels_stop      the day's features as they are, and no labels: any labels already stored for
                   the day are withdrawn (the provider stopped sending them; the freshness check
                   alerts once they are `label_tolerance_days` overdue)
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import numpy as np
import pandas as pd

from pipeline.core import layout
from pipeline.core.errors import SimulationError
from pipeline.core.settings import PipelineConfig
from pipeline.core.storage import Storage
from pipeline.data.ingest import publish_batch, publish_labels
from pipeline.data.source import Schema, read_source_text
from pipeline.data.typed import coerce_types
from pipeline.model import registry
from pipeline.model.features import feature_frame, target_vector
from pipeline.monitoring.scenarios import DEFAULT_STRENGTH, SCENARIOS

log = logging.getLogger(__name__)


def _champion_profile(config: PipelineConfig, storage: Storage) -> dict | None:
    alias = registry.get_alias(storage, config.model_name)
    if not alias:
        return None
    key = f"{layout.model_version(config.model_name, alias['version'])}/reference_profile.json"
    return storage.read_json(key) if storage.exists(key) else None


def _default_column(
    scenario: str, schema: Schema, profile: dict | None, frame: pd.DataFrame, sensitive: tuple[str, ...] = ()
) -> str:
    ranked = list((profile or {}).get("important_features", [])) + list(schema.numeric) + list(schema.categorical)
    if scenario in ("covariate_shift", "data_break"):
        return next(c for c in ranked if c in schema.numeric)
    if scenario == "correlation_break":
        return ",".join(schema.numeric)
    if scenario == "segment_shift":
        shares = [
            (share, f"{c}={g}")
            for c in sensitive
            if c in schema.categorical
            for g, share in frame[c].astype(str).value_counts(normalize=True).items()
            if share >= 0.1
        ]
        if not shares:
            raise SimulationError("segment_shift needs a categorical sensitive attribute with a group of >= 10%")
        return min(shares)[1]
    if scenario == "category_mix":
        if not schema.categorical:
            raise SimulationError("category_mix needs a categorical feature; this dataset has none")
        return max(schema.categorical, key=lambda c: frame[c].nunique())
    return schema.target_column


def inject(
    frame: pd.DataFrame,
    schema: Schema,
    scenario: str,
    column: str,
    strength: float,
    rng: np.random.Generator,
    ranges: dict,
    positive_class: str,
    reference_std: float | None = None,
    break_kind: str = "null",
    sensitive: tuple[str, ...] = (),
) -> pd.DataFrame:
    """The frame with the scenario applied (a copy). Pure apart from `rng`."""
    out = frame.copy()
    if scenario in ("none", "labels_stop"):
        return out
    if scenario == "covariate_shift":
        values = pd.to_numeric(out[column], errors="coerce").astype("float64")
        shift = strength * (reference_std if reference_std else float(values.std()))
        integer = bool(np.all(np.mod(values.dropna(), 1) == 0))
        if integer:
            shift = float(max(1, round(shift)))
        shifted = values + shift
        low, high = ranges.get(column, (None, None))
        shifted = shifted.clip(lower=low, upper=high)
        out[column] = shifted.round() if integer else shifted
        out[column] = out[column].astype(frame[column].dtype)
        return out
    if scenario == "category_mix":
        shares = out[column].value_counts(normalize=True)
        common = shares[shares >= 0.05]
        target = common.index[-1] if len(common) > 1 else shares.index[0]
        move = rng.random(len(out)) < strength
        out.loc[move, column] = target
        return out
    if scenario == "concept_drift":
        labels = out[schema.target_column].astype(str)
        others = labels[labels != str(positive_class)]
        if others.empty:
            raise SimulationError("concept_drift needs both classes in the day's labels")
        negative = others.value_counts().index[0]
        flip = rng.random(len(out)) < strength
        out[schema.target_column] = np.where(
            flip, np.where(labels == str(positive_class), negative, str(positive_class)), labels
        )
        out[schema.target_column] = out[schema.target_column].astype(frame[schema.target_column].dtype)
        return out
    if scenario == "correlation_break":
        chosen = np.flatnonzero(rng.random(len(out)) < strength)
        for name in column.split(","):
            shuffled = out[name].to_numpy(copy=True)
            shuffled[chosen] = shuffled[rng.permutation(chosen)]
            out[name] = pd.Series(shuffled, index=out.index, dtype=frame[name].dtype)
        return out
    if scenario == "segment_shift":
        name, _, value = column.partition("=")
        group = (out[name].astype(str) == value).to_numpy()
        positive = (out[schema.target_column].astype(str) == str(positive_class)).to_numpy()
        hidden = np.flatnonzero(group & positive & (rng.random(len(out)) < strength))
        donors = np.flatnonzero(group & ~positive)
        if not len(hidden) or not len(donors):
            raise SimulationError(f"segment_shift needs positives and negatives in {column} on every day")
        picked = rng.choice(donors, size=len(hidden))
        for feature in [c for c in schema.features if c != name and c not in sensitive]:
            changed = out[feature].to_numpy(copy=True)
            changed[hidden] = changed[picked]
            out[feature] = pd.Series(changed, index=out.index, dtype=frame[feature].dtype)
        return out
    if scenario == "data_break":
        if break_kind == "null":
            out[column] = pd.Series([None] * len(out), index=out.index, dtype=frame[column].dtype)
        elif break_kind == "unit":
            out[column] = (pd.to_numeric(out[column], errors="coerce") * 1000).astype("float64")
        else:
            raise SimulationError(f"data_break kind must be 'null' or 'unit', got {break_kind!r}")
        return out
    raise SimulationError(f"unknown scenario {scenario!r}; known: {list(SCENARIOS)}")


def simulate_deliveries(
    config: PipelineConfig,
    storage: Storage,
    days: list[dt.date],
    scenario: str,
    column: str | None = None,
    strength: float | None = None,
    break_kind: str = "null",
    seed: int = 0,
) -> dict:
    if scenario not in SCENARIOS:
        raise SimulationError(f"unknown scenario {scenario!r}; known: {list(SCENARIOS)}")
    from pipeline.core.errors import NoDelivery
    from pipeline.data import contract as contracts
    from pipeline.data.delivery import read_delivery
    from pipeline.data.typed import type_rows

    ds = config.dataset
    schema = contracts.require(config, storage).schema
    profile = _champion_profile(config, storage)
    strength = DEFAULT_STRENGTH[scenario] if strength is None else strength
    published = []
    for i, day in enumerate(days):
        try:
            delivery = read_delivery(config, storage, day)
        except NoDelivery as exc:
            raise SimulationError(f"source {ds.source.uri} has no rows for {day}") from exc
        rows = type_rows(delivery.text, schema, schema.target_column)
        typed = rows.typed.drop(index=rows.bad.index)
        col = column or _default_column(scenario, schema, profile, typed, ds.sensitive_attributes)
        if unknown := [c.partition("=")[0] for c in col.split(",") if c.partition("=")[0] not in typed.columns]:
            raise SimulationError(f"column(s) {unknown} not in dataset {ds.name} (columns: {list(typed.columns)})")
        ref_std = ((profile or {}).get("columns", {}).get(col) or {}).get("std")
        changed = inject(
            typed,
            schema,
            scenario,
            col,
            strength,
            np.random.default_rng([seed, i]),
            dict(config.validation.ranges),
            ds.target.positive_class,
            ref_std,
            break_kind,
            ds.sensitive_attributes,
        )
        note = {
            "simulated": {
                "scenario": scenario,
                "column": col,
                "strength": strength,
                **({"break_kind": break_kind} if scenario == "data_break" else {}),
            }
        }
        batch = publish_batch(config, storage, day, changed, schema, source=f"simulate:{scenario}", extra=note)
        if scenario == "labels_stop":
            storage.delete(layout.labels_partition(ds.name, day))
            labels = {"partition": None}
        else:
            labels = publish_labels(
                config,
                storage,
                day,
                changed,
                schema,
                as_of=day + dt.timedelta(days=ds.batching.label_delay_days),
                extra=note,
            )
        published.append(
            {"day": day.isoformat(), "rows": batch["rows"], "staged": batch["staged"], "labels": labels["partition"]}
        )
        log.info("simulated %s on %s (%s, strength %s): %d rows", scenario, day, col, strength, batch["rows"])
    return {"scenario": scenario, "column": column or (published and col), "strength": strength, "days": published}


def false_alarm_rates(config: PipelineConfig, storage: Storage, weeks: int, seed: int = 0) -> dict:
    """Weeks without injected drift: each draws a week of rows (the reference's median rows
    per day x window days) from the days outside the champion's training window, scores
    them with the champion, and runs drift, quality, performance and the policy under the
    calibrated and the fixed view (each with its own decision history). Returns how often
    each would have retrained."""

    from pipeline.monitoring import attribution, drift, multivariate, performance, policy, quality, segments
    from pipeline.monitoring.monitor import cached_noise_floors, load_reference
    from pipeline.monitoring.profile import calibrate

    ds = config.dataset
    m = config.monitoring
    version = registry.champion_version(storage, config.model_name)
    estimator, manifest = registry.load_model(storage, config.model_name, version)
    prof, sample = load_reference(storage, config.model_name, version)
    schema = Schema.from_dict(manifest["schema"])
    text = read_source_text(ds, storage)
    from pipeline.data.source import assign_days

    window = manifest["data"]["window"]
    days = assign_days(ds, text)
    outside = text[(days < dt.date.fromisoformat(window[0])) | (days > dt.date.fromisoformat(window[1]))]
    typed = coerce_types(outside, schema, list(schema.batch_columns) + [schema.target_column]).reset_index(drop=True)
    y_all = target_vector(typed[ds.target.column], ds.target.positive_class)
    scores_all = estimator.predict_proba(feature_frame(typed, schema))[:, 1]
    n = int(round(prof["rows_per_day_median"] * m.window_days))
    floors, size, _ = cached_noise_floors(storage, config, version, prof, sample, n)
    rng = np.random.default_rng(seed)
    histories: dict[str, list[dict[str, Any]]] = {"calibrated": [], "fixed": []}
    retrains = {"calibrated": 0, "fixed": 0}
    flagged_weeks = {"calibrated": 0, "fixed": 0}
    alerted = {"calibrated": 0, "fixed": 0}
    joint_flags, segment_weeks, attribution_weeks = 0, 0, 0
    trained = segments.trained_fairness(storage, config.model_name)
    start = dt.date(2030, 1, 6)
    for w in range(weeks):
        idx = rng.integers(0, len(typed), size=size)
        current, scores, y = typed.iloc[idx].reset_index(drop=True), scores_all[idx], y_all[idx]
        rows, drifted = drift.drift_rows(prof, sample, current, scores, floors, m)
        joint = multivariate.for_window(prof, sample, current, m)
        joint_flags += bool(joint and joint["flagged"])
        moved = attribution.for_window(estimator, schema, prof, current, m.random_state + w)
        attribution_weeks += bool(moved and moved["flagged"])
        _, breaks = quality.quality_rows(prof, current, dict(config.validation.ranges), m.quality)
        realized = performance.realized_metrics(y, scores, manifest["threshold"])
        estimated = performance.estimated_metrics(calibrate(prof, scores), scores, manifest["threshold"])
        as_of = start + dt.timedelta(weeks=w)
        labelled = current.assign(
            score=scores, y=y, threshold=manifest["threshold"], day=as_of.isoformat(), week="w", model_version=version
        )
        seg = segments.segment_report(config, labelled, [as_of], lambda s: calibrate(prof, s), trained)
        segment_weeks += bool(seg["breaches"])
        for view in ("calibrated", "fixed"):
            view_policy = m.policy.model_copy(update={"flagging": view})
            decision = policy.decide(
                view_policy,
                as_of,
                prof["important_features"],
                drifted,
                breaks,
                realized,
                estimated,
                histories[view],
                multivariate=joint,
                segment_breaches=seg["breaches"],
            )
            histories[view].append(decision)
            retrains[view] += decision["retrain"]
            alerted[view] += bool(decision["alerts"])
            flagged_weeks[view] += bool(drifted[view])
    return {
        "weeks": weeks,
        "rows_per_week": size,
        "model_version": version,
        "retrain_rate": {k: v / weeks for k, v in retrains.items()},
        "retrains": retrains,
        "weeks_with_any_flagged_feature": flagged_weeks,
        "weeks_with_alerts": alerted,
        "weeks_with_multivariate_flag": joint_flags,
        "weeks_with_segment_breach": segment_weeks,
        "weeks_with_attribution_flag": attribution_weeks,
        "policy": {
            "important_features": prof["important_features"],
            "persistence_runs": m.policy.persistence_runs,
            "cooldown_days": m.policy.cooldown_days,
            "max_retrains": m.policy.max_retrains,
        },
    }
