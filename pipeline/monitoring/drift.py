"""Drift of the current window against the champion's reference profile, under two views:

* fixed: each statistic against its fixed threshold in params (a feature is flagged when
  any of its statistics crosses one: what a typical dashboard does, and what cries wolf
  on large samples);
* calibrated: each statistic against its noise floor, the distribution that sampling
  alone produces at the current sample size (two-sample bootstrap of the reference);
  the primary statistic's calibrated p-values go through Benjamini-Hochberg across
  features, and a feature is flagged only when rejected *and* the statistic reaches the
  minimum effect size.

Pure functions: the profile, the sorted sample and the current values in, rows out.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.core.settings import MonitoringConfig
from pipeline.monitoring.profile import SCORE_COLUMN, numeric_values
from pipeline.monitoring.stats import (
    STATISTICS,
    benjamini_hochberg,
    calibrated_pvalue,
    categorical_drift,
    null_categorical,
    null_numeric,
    numeric_drift,
)


def quantised_size(n: int) -> int:
    """The sample size noise floors are computed for: n rounded to two significant digits,
    so consecutive weeks of similar volume share one cached calibration (the floors at
    2,300 and 2,333 rows differ by under 1%)."""
    if n < 100:
        return max(int(n), 1)
    step = 10 ** (len(str(int(n))) - 2)
    return int(round(n / step) * step)


def noise_floors(
    profile: dict, sample: dict[str, np.ndarray], n_current: int, config: MonitoringConfig, seed_offset: int = 0
) -> dict[str, dict[str, np.ndarray]]:
    """Sorted null distributions per column and statistic at sample size `n_current`."""
    rng = np.random.default_rng([config.random_state, n_current, seed_offset])
    out = {}
    for col, info in profile["columns"].items():
        if info["kind"] == "numeric":
            if len(sample.get(col, [])) == 0:
                continue
            n = max(1, round(n_current * (1 - info["missing_share"])))
            out[col] = null_numeric(
                sample[col], n, np.asarray(info["psi_edges"]), info["std"] or 0.0, config.bootstrap_resamples, rng
            )
        elif info["counts"]:
            n = max(1, round(n_current * (1 - info["missing_share"])))
            out[col] = null_categorical(info["counts"], n, config.bootstrap_resamples, rng)
    score = profile["score"]
    out[SCORE_COLUMN] = null_numeric(
        sample[SCORE_COLUMN],
        n_current,
        np.asarray(score["psi_edges"]),
        score["std"] or 0.0,
        config.bootstrap_resamples,
        rng,
    )
    return out


def _rows_for(
    column: str,
    kind: str,
    values: dict,
    nulls: dict[str, np.ndarray],
    config: MonitoringConfig,
    importance_rank: int | None,
) -> list[dict]:
    rows = []
    for stat, statistic in STATISTICS.items():
        if statistic.kind != kind or stat not in values:
            continue
        field, above = statistic.fixed_key, not statistic.fixed_on_pvalue
        threshold = config.fixed_thresholds.get(field, statistic.fixed)
        tested = values[f"{stat}_pvalue"] if statistic.fixed_on_pvalue else values[stat]
        null = nulls.get(stat)
        rows.append(
            {
                "feature": column,
                "kind": kind,
                "statistic": stat,
                "value": float(values[stat]),
                "scipy_pvalue": values.get(f"{stat}_pvalue"),
                "noise_p95": float(np.quantile(null, 0.95)) if null is not None else None,
                "calibrated_pvalue": calibrated_pvalue(null, values[stat]) if null is not None else None,
                "fixed_threshold": f"{field} {'>' if above else '<'} {threshold}",
                "fixed_flag": bool(tested > threshold if above else tested < threshold),
                "is_primary": stat == config.primary_statistic["numeric" if kind == "numeric" else "categorical"],
                "calibrated_flag": False,
                "importance_rank": importance_rank,
            }
        )
    return rows


def drift_rows(
    profile: dict,
    sample: dict[str, np.ndarray],
    current: pd.DataFrame,
    scores: np.ndarray | None,
    nulls: dict,
    config: MonitoringConfig,
) -> tuple[list[dict], dict[str, list[str]]]:
    """One row per column x statistic (features, then the score as prediction drift) and the
    flagged features under both views."""
    ranked = sorted(profile.get("importance", {}).items(), key=lambda kv: -kv[1]["mean"])
    ranks = {f: i + 1 for i, (f, _) in enumerate(ranked)}
    rows: list[dict] = []
    for col, info in profile["columns"].items():
        if col not in current.columns:
            continue
        if info["kind"] == "numeric":
            values = numeric_drift(
                sample.get(col, np.array([])),
                numeric_values(current[col]),
                np.asarray(info["psi_edges"]),
                info["std"] or 0.0,
            )
        else:
            values = categorical_drift(info["counts"], current[col])
        rows.extend(_rows_for(col, info["kind"], values, nulls.get(col, {}), config, ranks.get(col)))

    primary = [r for r in rows if r["is_primary"] and r["calibrated_pvalue"] is not None]
    rejected = benjamini_hochberg([r["calibrated_pvalue"] for r in primary], config.fdr)
    for row, rej in zip(primary, rejected, strict=True):
        row["calibrated_flag"] = bool(rej and row["value"] >= config.min_effect.get(row["statistic"], 0.0))
    drifted = {
        "calibrated": sorted({r["feature"] for r in primary if r["calibrated_flag"]}),
        "fixed": sorted({r["feature"] for r in rows if r["fixed_flag"]}),
    }
    if scores is not None and len(scores):
        score = profile["score"]
        values = numeric_drift(
            sample[SCORE_COLUMN],
            np.asarray(scores, dtype="float64"),
            np.asarray(score["psi_edges"]),
            score["std"] or 0.0,
        )
        score_rows = _rows_for(SCORE_COLUMN, "numeric", values, nulls.get(SCORE_COLUMN, {}), config, None)
        for row in score_rows:
            row["kind"] = "prediction"
            if row["is_primary"]:
                row["calibrated_flag"] = bool(
                    row["calibrated_pvalue"] <= config.fdr
                    and row["value"] >= config.min_effect.get(row["statistic"], 0.0)
                )
        rows.extend(score_rows)
    return rows, drifted
