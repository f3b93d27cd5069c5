"""Data-quality drift: missing shares, out-of-range shares, unseen categories, unit
changes, rows per day and quarantined deliveries. Pure functions; each finding that
crosses its limit is a *break*, which makes the policy alert instead of retrain."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.core.settings import QualityLimits
from pipeline.monitoring.profile import category_values, numeric_values


def quality_rows(
    profile: dict, current: pd.DataFrame, ranges: dict, limits: QualityLimits
) -> tuple[list[dict], list[str]]:
    rows, breaks = [], []

    def add(feature, statistic, value, reference, limit, broken, message):
        rows.append(
            {
                "feature": feature,
                "statistic": statistic,
                "value": value,
                "reference": reference,
                "limit": limit,
                "break": bool(broken),
            }
        )
        if broken:
            breaks.append(message)

    n = len(current)
    for col, info in profile["columns"].items():
        if col not in current.columns:
            add(col, "column_present", 0.0, 1.0, 1.0, True, f"column {col} is missing from the scored data")
            continue
        if n == 0:
            continue
        if info["kind"] == "numeric":
            values = numeric_values(current[col])
            missing = float(np.isnan(values).mean())
        else:
            cats = category_values(current[col])
            missing = sum(v is None for v in cats) / n
        increase = missing - info["missing_share"]
        add(
            col,
            "missing_share",
            missing,
            info["missing_share"],
            limits.max_missing_share_increase,
            increase > limits.max_missing_share_increase,
            f"{col}: missing share {missing:.1%} (reference {info['missing_share']:.1%}, "
            f"limit +{limits.max_missing_share_increase:.0%})",
        )
        if info["kind"] == "numeric":
            present = values[~np.isnan(values)]
            if col in ranges and len(present):
                low, high = ranges[col]
                outside = ((present < low) if low is not None else False) | (
                    (present > high) if high is not None else False
                )
                share = float(np.mean(outside))
                add(
                    col,
                    "out_of_range_share",
                    share,
                    0.0,
                    limits.max_out_of_range_share,
                    share > limits.max_out_of_range_share,
                    f"{col}: {share:.1%} of values outside [{low}, {high}] (limit {limits.max_out_of_range_share:.0%})",
                )
            # Profiles since 2026-12-06 keep the non-zero values' median (older ones: all values').
            nonzero = "median_abs_nonzero" in info
            ref_med = info["median_abs_nonzero"] if nonzero else info.get("median_abs")
            scaled = np.abs(present[present != 0] if nonzero else present)
            if len(scaled) and ref_med:
                ratio = float(np.median(scaled) / ref_med)
                add(
                    col,
                    "scale_ratio",
                    ratio,
                    1.0,
                    limits.max_scale_ratio,
                    ratio > limits.max_scale_ratio or ratio < 1 / limits.max_scale_ratio,
                    f"{col}: median |value|{' (non-zero values)' if nonzero else ''} is {ratio:.3g}x the "
                    "reference's (a unit change?)",
                )
        else:
            present = [v for v in cats if v is not None]
            if present:
                unseen = sum(v not in info["counts"] for v in present) / len(present)
                add(
                    col,
                    "unseen_category_share",
                    unseen,
                    0.0,
                    limits.max_unseen_category_share,
                    unseen > limits.max_unseen_category_share,
                    f"{col}: {unseen:.1%} of values are categories the reference never saw",
                )
    return rows, breaks


def day_rows(days: list[dict], rows_per_day_median: float, limits: QualityLimits) -> tuple[list[dict], list[str]]:
    """`days`: one dict per window day with `day`, `status` (scored|quarantined|not_scored)
    and `rows`."""
    rows, breaks = [], []
    quarantined = [d["day"] for d in days if d["status"] == "quarantined"]
    scored = [d for d in days if d["status"] == "scored"]
    for d in days:
        low = d["status"] == "scored" and d["rows"] < limits.min_rows_share * rows_per_day_median
        rows.append(
            {
                "feature": f"day {d['day']}",
                "statistic": f"rows ({d['status']})",
                "value": float(d["rows"]),
                "reference": rows_per_day_median,
                "limit": limits.min_rows_share * rows_per_day_median,
                "break": bool(low or d["status"] == "quarantined"),
            }
        )
        if low:
            breaks.append(
                f"{d['day']}: {d['rows']} rows, below {limits.min_rows_share:.0%} of the reference's "
                f"median {rows_per_day_median:.0f} per day"
            )
    if len(quarantined) > limits.max_quarantined_days:
        breaks.append(f"{len(quarantined)} quarantined deliveries in the window ({', '.join(quarantined)})")
    if not scored:
        breaks.append("no scored day in the window: nothing to compare")
    return rows, breaks
