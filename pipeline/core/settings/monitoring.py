"""Settings of the monitoring stage. Statistic and metric names are checked by the stage
(pipeline/monitoring/stats.py and performance.py), which owns them."""

from __future__ import annotations

from typing import Annotated, Literal

from .types import (
    Flag,
    Number,
    Positive,
    Probability,
    Resamples,
    Section,
    Share,
    Text,
    Whole,
    bounded,
    frozen,
    frozen_map,
)


class QualityLimits(Section):
    """Data-quality breaks: any one makes the run alert instead of retraining."""

    max_missing_share_increase: Number = 0.05  # current minus reference, per column
    max_out_of_range_share: Number = 0.01  # outside validation.ranges
    max_unseen_category_share: Number = 0.01
    max_scale_ratio: Number = 10.0  # median |value| vs reference: a unit change
    min_rows_share: Number = 0.5  # of the reference's median rows per day
    max_quarantined_days: Whole = 0


class FreshnessLimits(Section):
    """How old each zone's newest day may be before `status` calls it late (days)."""

    raw_max_age_days: Whole = 2  # newest published delivery
    label_tolerance_days: Whole = 2  # beyond dataset.batching.label_delay_days
    predictions_max_age_days: Whole = 2
    champion_max_age_days: Positive = 90  # since the champion's training date
    monitor_max_age_days: Positive = 8  # the weekly drift run


class MultivariateConfig(Section):
    """PCA reconstruction error of the numeric features (pipeline/monitoring/multivariate.py)."""

    enabled: Flag = True
    variance: Probability = 0.65  # of the standardised features' variance the components keep
    min_increase: Annotated[Number, bounded(lambda v: v >= 0, "must be >= 0")] = (
        0.20  # of the mean error over the reference's, for a flag (with p < fdr)
    )


class SegmentLimits(Section):
    """Per-group performance while serving (pipeline/monitoring/segments.py); the disparity limits
    are the gate's (`fairness`)."""

    columns: tuple[Text, ...] = ()  # besides dataset.sensitive_attributes
    max_tpr_drop: Share = 0.15  # a group's realized TPR below its TPR at training by more


class RetrainPolicyConfig(Section):
    flagging: Literal["calibrated", "fixed"] = "calibrated"
    important_features: Positive = 5  # top features by permutation importance
    persistence_runs: Positive = 1  # consecutive runs an important feature must drift
    min_realized: frozen_map(Number) = frozen(roc_auc=0.70)  # type: ignore[valid-type]
    min_estimated: frozen_map(Number) = frozen(roc_auc=0.70)  # type: ignore[valid-type]
    min_labelled_rows: Whole = 500
    cooldown_days: Whole = 14
    max_retrains: Whole = 2
    period_days: Whole = 30
    # Drift whose days have no labels yet: retrain now (the reason says what the model saw) or wait.
    label_less_drift: Literal["retrain", "wait"] = "retrain"
    retrain_on_segment_breach: Flag = False  # a segment's breach always alerts; retrain too?


class MonitoringConfig(Section):
    window_days: Positive = 7  # scored days compared with the reference
    performance_window_days: Positive = 28  # scored days whose labels are looked for
    reference_sample_size: Whole = 50000  # per column; the profile is exact below it
    psi_bins: Whole = 10
    bootstrap_resamples: Resamples = 1000
    fdr: Probability = 0.05  # Benjamini-Hochberg across features
    primary_statistic: frozen_map(Text) = frozen(numeric="ks", categorical="jensen_shannon")  # type: ignore[valid-type]
    min_effect: frozen_map(Number) = frozen(ks=0.05, psi=0.05, wasserstein=0.05, jensen_shannon=0.05)  # type: ignore[valid-type]
    # The fixed view's thresholds by statistic (psi, ks_pvalue, ...); unlisted: the statistic's default.
    fixed_thresholds: frozen_map(Number) = frozen()  # type: ignore[valid-type]
    quality: QualityLimits = QualityLimits()
    policy: RetrainPolicyConfig = RetrainPolicyConfig()
    freshness: FreshnessLimits = FreshnessLimits()
    multivariate: MultivariateConfig = MultivariateConfig()
    segments: SegmentLimits = SegmentLimits()
    random_state: Whole = 7
