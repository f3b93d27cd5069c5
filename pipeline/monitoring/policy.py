"""The retraining policy: a pure function of this run's findings and earlier decisions.

Retrain when
  * an important feature (top ``important_features`` by permutation importance) is
    flagged as drifted in ``persistence_runs`` consecutive runs, or
  * realized performance (enough labelled rows) or estimated performance falls below
    its floor;
never on a data-quality break (that alerts instead: retraining on broken data would
bake the break into the model); and not within ``cooldown_days`` of the last triggered
retraining, nor more than ``max_retrains`` times per ``period_days``.
"""

from __future__ import annotations

import datetime as dt

from pipeline.core.settings import RetrainPolicyConfig

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
) -> dict:
    """`drifted` holds the flagged features under both views ("calibrated", "fixed");
    `history` the earlier decision records (any order). Returns the decision record."""
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
    below = []
    if realized and (realized.get("rows") or 0) >= policy.min_labelled_rows:
        for metric, floor in sorted(policy.min_realized.items()):
            value = realized.get(metric)
            if value is not None and value < floor:
                below.append(f"realized {metric} {value:.3f} < {floor} on {realized['rows']} labelled rows")
    if estimated:
        for metric, floor in sorted(policy.min_estimated.items()):
            value = estimated.get(metric)
            if value is not None and value < floor:
                below.append(f"estimated {metric} {value:.3f} < {floor}")
    triggers.extend(below)

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
    alerts = [f"data-quality break: {b}" for b in quality_breaks]
    if triggers and suppressed:
        alerts.append("retraining suppressed (" + "; ".join(suppressed) + "): " + "; ".join(triggers))
    if retrain:
        reason = "retraining: " + "; ".join(triggers)
    elif quality_breaks:
        reason = "no retraining: data-quality break (" + "; ".join(quality_breaks[:3]) + ")"
    elif triggers:
        reason = "no retraining: " + "; ".join(suppressed)
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
        "quality_breaks": list(quality_breaks),
    }
