"""The retraining policy: a pure function of this run's findings and earlier decisions.

Retrain when
  * an important feature (top ``important_features`` by permutation importance), or the
    numeric features jointly (multivariate drift), are flagged as drifted in
    ``persistence_runs`` consecutive runs, or
  * realized performance (enough labelled rows) or estimated performance falls below
    its floor;
never on a data-quality break (that alerts instead: retraining on broken data would
bake the break into the model); and not within ``cooldown_days`` of the last triggered
retraining, nor more than ``max_retrains`` times per ``period_days``.

Drift is label-less: a retraining now trains on days whose labels have arrived, which end
``label_delay_days`` before today, so it may not contain the drifted days at all. The decision
records the drift period, the window a retraining would train on and how many drifted days it
holds; with ``label_less_drift: wait`` it waits (a pending decision each weekly run re-checks) until
labels cover the drift, with ``retrain`` it retrains and its reason says what the new model saw.
A trigger backed by realized performance (labelled rows) is never held back this way.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from pipeline.core.settings import RetrainPolicyConfig
from pipeline.monitoring.multivariate import describe

# Metrics realized and estimated performance both report (pipeline/monitoring/performance.py).
MONITORED_METRICS = ("roc_auc", "pr_auc", "precision", "recall")


def check_settings(policy: RetrainPolicyConfig) -> list[str]:
    return [
        f"monitoring.policy: unknown metric {m!r}; known: {sorted(MONITORED_METRICS)}"
        for m in [*policy.min_realized, *policy.min_estimated]
        if m not in MONITORED_METRICS
    ]


def _flag_key(flagging: str) -> str:
    return "drifted_features" if flagging == "calibrated" else "drifted_features_fixed"


def decide(
    policy: RetrainPolicyConfig,
    as_of: dt.date,
    important: list[str],
    drifted: dict[str, list[str]],
    quality_breaks: list[str],
    realized: dict | None,
    estimated: dict | None,
    history: list[dict],
    drift_period: tuple[dt.date, dt.date] | None = None,
    labelled_until: dt.date | None = None,
    multivariate: dict | None = None,
    segment_breaches: Sequence[str] = (),
) -> dict:
    """`drifted` holds the flagged features under both views ("calibrated", "fixed");
    `history` the earlier decision records (any order); `drift_period` the monitored days and
    `labelled_until` the last day a retraining now could train on; `multivariate` the window's
    PCA reconstruction result (pipeline/monitoring/multivariate.py), which must persist like a
    feature's flag; `segment_breaches` the groups whose realized TPR or disparities broke a limit
    (pipeline/monitoring/segments.py): they always alert, and trigger retraining when
    `retrain_on_segment_breach` (label-backed: they come from labels). Returns the decision record."""
    flagged_now = drifted.get(policy.flagging, [])
    earlier = sorted((h for h in history if h["as_of"] < as_of.isoformat()), key=lambda h: h["as_of"])
    recent = earlier[-(policy.persistence_runs - 1) :] if policy.persistence_runs > 1 else []
    persistent = []
    for feature in important:
        if feature not in flagged_now:
            continue
        if len(recent) == policy.persistence_runs - 1 and all(
            feature in h.get(_flag_key(policy.flagging), []) for h in recent
        ):
            persistent.append(feature)

    triggers = []
    if persistent:
        runs = f" in {policy.persistence_runs} consecutive runs" if policy.persistence_runs > 1 else ""
        triggers.append(f"drift in important feature(s) {', '.join(persistent)}{runs}")
    joint_before = [bool((h.get("multivariate_drift") or {}).get("flagged")) for h in recent]
    if multivariate and multivariate["flagged"] and len(recent) == policy.persistence_runs - 1 and all(joint_before):
        triggers.append(describe(multivariate))
    label_less = list(triggers)
    below = []
    if realized and (realized.get("rows") or 0) >= policy.min_labelled_rows:
        for metric, floor in sorted(policy.min_realized.items()):
            value = realized.get(metric)
            if value is not None and value < floor:
                below.append(f"realized {metric} {value:.3f} < {floor} on {realized['rows']} labelled rows")
    if segment_breaches and policy.retrain_on_segment_breach:
        below += [f"segment breach: {b}" for b in segment_breaches]
    label_backed = bool(below)
    if estimated:
        for metric, floor in sorted(policy.min_estimated.items()):
            value = estimated.get(metric)
            if value is not None and value < floor:
                below.append(f"estimated {metric} {value:.3f} < {floor}")
                label_less.append(below[-1])
    triggers.extend(below)
    coverage = _coverage(drift_period, labelled_until)
    pending = _pending(earlier)
    waiting = None
    if pending and labelled_until and labelled_until >= dt.date.fromisoformat(pending["drift_period"][1]):
        triggers.append(
            f"labels now cover the drift of {pending['drift_period'][0]}..{pending['drift_period'][1]} "
            f"(waiting since {pending['since']}: {'; '.join(pending['triggers'])})"
        )
        label_backed = True
    elif pending:
        waiting = pending  # still waiting: carried on until labels cover it
    if (
        label_less
        and not label_backed
        and coverage
        and coverage["labelled_days"] < coverage["days"]
        and policy.label_less_drift == "wait"
    ):
        waiting = {"since": as_of.isoformat(), "drift_period": coverage["drift_period"], "triggers": label_less}
        triggers = [t for t in triggers if t not in label_less]

    suppressed = []
    if triggers and quality_breaks:
        suppressed.append("data-quality break: not retraining on broken data")
    retrains = [h for h in earlier if h.get("retrain")]
    if triggers and retrains:
        last = dt.date.fromisoformat(retrains[-1]["as_of"])
        if (as_of - last).days < policy.cooldown_days:
            suppressed.append(f"cooldown: last retraining triggered {last} (< {policy.cooldown_days} days ago)")
        since = as_of - dt.timedelta(days=policy.period_days)
        count = sum(1 for h in retrains if dt.date.fromisoformat(h["as_of"]) > since)
        if count >= policy.max_retrains:
            suppressed.append(
                f"limit: {count} retrainings in the last {policy.period_days} days (max {policy.max_retrains})"
            )
    retrain = bool(triggers) and not suppressed
    alerts = [f"data-quality break: {b}" for b in quality_breaks] + [f"segment breach: {b}" for b in segment_breaches]
    if triggers and suppressed:
        alerts.append("retraining suppressed (" + "; ".join(suppressed) + "): " + "; ".join(triggers))
    if retrain:
        reason = "retraining: " + "; ".join(triggers)
        if coverage and not label_backed and coverage["labelled_days"] < coverage["days"]:
            reason += ". " + _what_the_model_sees(coverage)
    elif waiting and not quality_breaks:
        reason = (
            f"retraining waits for labels: {'; '.join(waiting['triggers'])} over "
            f"{waiting['drift_period'][0]}..{waiting['drift_period'][1]}; a retraining now would train on days "
            f"up to {labelled_until}, before the drift; the weekly run re-checks until labels cover it"
        )
    elif quality_breaks:
        reason = "no retraining: data-quality break (" + "; ".join(quality_breaks[:3]) + ")"
    elif triggers:
        reason = "no retraining: " + "; ".join(suppressed)
    elif segment_breaches:
        reason = (
            f"no retraining, {len(segment_breaches)} segment breach(es) alert on-call "
            f"(retrain_on_segment_breach is off): {segment_breaches[0]}"
        )
    else:
        reason = "no retraining: no persistent drift of important features, performance above floors"
    return {
        "as_of": as_of.isoformat(),
        "retrain": retrain,
        "reason": reason,
        "triggers": triggers,
        "suppressed_by": suppressed,
        "alerts": alerts,
        "flagging": policy.flagging,
        "important_features": list(important),
        "drifted_features": list(drifted.get("calibrated", [])),
        "drifted_features_fixed": list(drifted.get("fixed", [])),
        "drifted_important_features": persistent,
        "multivariate_drift": multivariate,
        "quality_breaks": list(quality_breaks),
        "label_backed": label_backed,
        "drift_coverage": coverage,
        "waiting_for_labels": None if retrain else waiting,
    }


def _coverage(drift_period: tuple[dt.date, dt.date] | None, labelled_until: dt.date | None) -> dict | None:
    """How many of the monitored days a retraining now would hold (they need their labels)."""
    if drift_period is None or labelled_until is None:
        return None
    start, end = drift_period
    days = (end - start).days + 1
    labelled = max(0, min((labelled_until - start).days + 1, days))
    return {
        "drift_period": [start.isoformat(), end.isoformat()],
        "training_window_ends": labelled_until.isoformat(),
        "days": days,
        "labelled_days": labelled,
        "inside_training_window": labelled == days,
    }


def _what_the_model_sees(coverage: dict) -> str:
    start, end = coverage["drift_period"]
    held = coverage["labelled_days"]
    seen = "none of them" if held == 0 else f"{held} of its {coverage['days']} days"
    return (
        f"Label-less drift: the drift covers {start}..{end}, the new model's training window ends "
        f"{coverage['training_window_ends']} and holds {seen} (their labels have not arrived); "
        "it is retrained on the latest labelled days, not on the drifted ones"
    )


def _pending(earlier: list[dict]) -> dict | None:
    """The wait of the latest earlier decision, unless a retraining happened since."""
    if not earlier or earlier[-1].get("retrain"):
        return None
    return earlier[-1].get("waiting_for_labels")
