"""Settings of the model stage: training, the promotion gate, cost, fairness, registry, scoring.
Metric names are checked by the model stage (pipeline/model/metrics.py), which owns them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from .types import Flag, Number, Positive, Probability, Resamples, Section, Text, Whole, bounded, frozen, frozen_map


class TrainingConfig(Section):
    window_days: Positive = 30  # labelled days per training run (the most recent)
    holdout_days: Positive = 7  # the window's last days, held out for evaluation
    cv_folds: Whole = 5
    random_state: Whole = 42
    estimator: Literal["hist_gradient_boosting", "logistic_regression", "random_forest"] = "hist_gradient_boosting"
    estimator_params: frozen_map(Any) = frozen()  # type: ignore[valid-type]


class GateConfig(Section):
    min_metrics: frozen_map(Number) = frozen()  # type: ignore[valid-type]  # floors on holdout metrics
    max_metrics: frozen_map(Number) = frozen()  # type: ignore[valid-type]  # ceilings (lower is better)
    # The paired-bootstrap lower bound of (candidate - champion) on primary_metric must reach this.
    primary_metric: Text = "roc_auc"
    min_improvement: Number = -0.005
    bootstrap_resamples: Resamples = 1000
    confidence: Annotated[Number, bounded(lambda v: 0.5 < v < 1, "must be in (0.5, 1)")] = 0.95
    max_cost_increase: Number = 0.0  # per 1,000 decisions, over the champion's
    max_cost_per_1000: Number | None = None
    require_approval: Flag = False  # a human approves (Airflow HITL) between gate and register


class CostConfig(Section):
    """Cost of each kind of error; with this section the threshold minimises expected cost."""

    false_positive: Number = 1.0
    false_negative: Number = 1.0


class FairnessConfig(Section):
    min_group_size: Whole = 50  # smaller groups are reported, not judged
    bins: frozen_map(tuple[Number, ...]) = frozen()  # type: ignore[valid-type]  # numeric attributes' edges
    min_demographic_parity_ratio: Number | None = None
    max_equal_opportunity_difference: Number | None = None


class RegistryConfig(Section):
    promote_to: Literal["champion", "challenger"] = "champion"
    signing_conn_id: Text = "pipeline_signing"  # Airflow connection holding the signing key


class ScoringConfig(Section):
    threshold: Probability = 0.5  # only without a cost section
    canary_share: Number = 0.0  # rows a challenger decides (stable hash); 0: shadow only
    rows_per_task: Positive = 250_000  # mapped scoring: rows per task's row-group range
    # Scoring by data arrival (dags/scoring_on_arrival.py): how often the landing area is listed,
    # how long a day's files must be unchanged before they are read, how far back a new day may be.
    arrival_poll_seconds: Positive = 30
    arrival_settle_seconds: Annotated[Whole, bounded(lambda v: 0 <= v <= 86400, "must be in [0, 86400]")] = 30
    arrival_lookback_days: Positive = 7


class ModelConfig(Section):
    name: Text = ""
    # For the model card (models/<m>/versions/<v>/model_card.html): what the model is for, what not.
    intended_use: Text = ""
    out_of_scope: tuple[Text, ...] = ()
    limitations: tuple[Text, ...] = ()
