"""What of a weekly decision pages on-call.

The monitor task always completes (its decision is written, retraining is triggered by policy);
a separate task fails with :class:`MonitoringFindings` when the decision holds findings a person
must act on: data-quality breaks, segment breaches, a retraining suppressed by its limit or by
broken data. A retraining held by its cooldown is not one (the last retraining is days old and
the next run re-decides): paging for it every week would be alert fatigue.
"""

from __future__ import annotations

import datetime as dt

from pipeline.core import layout
from pipeline.core.errors import MonitoringError, MonitoringFindings
from pipeline.core.settings import PipelineConfig
from pipeline.core.storage import Storage


def pages(decision: dict) -> list[str]:
    """The decision's alerts that page: all but a retraining held by its cooldown alone."""
    suppressed = decision.get("suppressed_by") or []
    cooldown_only = bool(suppressed) and all(s.startswith("cooldown") for s in suppressed)
    return [a for a in decision.get("alerts", []) if not (cooldown_only and a.startswith("retraining suppressed"))]


def read_decision(config: PipelineConfig, storage: Storage, as_of: dt.date, needed_by: str) -> tuple[dict, str]:
    """A weekly run's decision record and its key; a missing one is a MonitoringError naming who needed it."""
    key = layout.monitoring_decision(config.model_name, as_of)
    try:
        return storage.read_json(key), key
    except FileNotFoundError as exc:
        raise MonitoringError(f"no monitoring decision at {storage.uri(key)} {needed_by}") from exc


def require_no_findings(config: PipelineConfig, storage: Storage, as_of: dt.date) -> dict:
    """The decision's findings; raises MonitoringFindings (an alert of kind monitoring) when any pages."""
    decision, key = read_decision(config, storage, as_of, "to check for findings: the monitor task did not finish")
    found = pages(decision)
    if found:
        raise MonitoringFindings(
            f"drift run as of {as_of} for {config.model_name} ({decision['champion_version']}): "
            f"{len(found)} finding(s): " + "; ".join(found) + f". Report: {decision['report']}",
            links={"drift report": decision["report"], "decision": storage.uri(key)},
        )
    return {"as_of": as_of.isoformat(), "findings": 0, "report": decision["report"]}
