"""The model stage's checks of the settings it owns: metric names, the training window, cost,
canary share and fairness bins (run by steps.settings before a step reads or writes anything)."""

from __future__ import annotations

from pipeline.core.settings import PipelineConfig
from pipeline.model.metrics import LOWER_IS_BETTER, METRIC_NAMES


def check_settings(config: PipelineConfig) -> list[str]:
    gate = config.gate
    problems = [
        f"gate.min_metrics: unknown metric {m!r}; known: {sorted(METRIC_NAMES)}"
        for m in [*gate.min_metrics, *gate.max_metrics]
        if m not in METRIC_NAMES
    ]
    comparable = sorted(set(METRIC_NAMES) - LOWER_IS_BETTER)
    if gate.primary_metric not in comparable:
        problems.append(f"gate.primary_metric must be one of {comparable}, got {gate.primary_metric!r}")
    t, cost = config.training, config.cost
    if t.holdout_days >= t.window_days:
        problems.append("training.holdout_days must be >= 1 and smaller than training.window_days")
    if cost and (cost.false_positive < 0 or cost.false_negative < 0 or cost.false_positive + cost.false_negative == 0):
        problems.append("cost.false_positive and cost.false_negative must be >= 0, not both 0")
    if not 0.0 <= config.scoring.canary_share <= 1.0:
        problems.append("scoring.canary_share must be between 0 and 1")
    if unknown := sorted(set(config.fairness.bins) - set(config.dataset.sensitive_attributes)):
        problems.append(f"fairness.bins names {unknown}, not in dataset.sensitive_attributes")
    for col, edges in config.fairness.bins.items():
        if list(edges) != sorted(set(edges)):
            problems.append(f"fairness.bins.{col}: edges must be increasing, got {list(edges)}")
    return problems
