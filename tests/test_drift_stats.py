"""Drift statistics, noise floors, performance estimation and the retraining policy:
pure functions checked against scipy/sklearn and against hand-made histories."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from scipy.spatial.distance import jensenshannon
from sklearn.metrics import roc_auc_score

from pipeline.core.settings import RetrainPolicyConfig, load_config
from pipeline.data.source import Schema
from pipeline.model.features import build_model, feature_frame
from pipeline.monitoring import performance, policy, stats
from pipeline.monitoring.drift import quantised_size
from pipeline.monitoring.profile import build_profile, read_sample

TOL = 1e-9


def _frame(rng, n, shift=0.0):
    return pd.DataFrame(
        {
            "id": np.arange(n),
            "amount": np.where(rng.random(n) < 0.03, np.nan, rng.lognormal(8 + shift, 1.0, n)),
            "status": rng.integers(-2, 6, n).astype("float64"),  # discrete, many ties
            "segment": pd.Series(rng.choice(["a", "b", "c"], n, p=[0.5, 0.3, 0.2]), dtype=object),
        }
    )


@pytest.fixture(scope="module")
def stored_profile():
    rng = np.random.default_rng(1)
    config = load_config()
    schema = Schema(
        id_column="id",
        target_column="y",
        event_time_column=None,
        numeric=("amount", "status"),
        categorical=("segment",),
        pii=(),
        id_is_integer=True,
    )
    train = _frame(rng, 3000)
    y = (rng.random(3000) < 1 / (1 + np.exp(-(train["status"].to_numpy() - 1)))).astype(int)
    model = build_model(schema, config.training).fit(feature_frame(train, schema), y)
    hold = _frame(rng, 800)
    hold_y = (rng.random(800) < 1 / (1 + np.exp(-(hold["status"].to_numpy() - 1)))).astype(int)
    hold_X = feature_frame(hold, schema)
    prof, sample_bytes = build_profile(
        config, schema, train, hold_X, hold_y, model.predict_proba(hold_X)[:, 1], model, rows_per_day=300
    )
    return {"profile": prof, "sample": read_sample(sample_bytes), "train": train}


def test_statistics_from_the_stored_profile_equal_scipy_on_the_raw_data(stored_profile):
    """The stored reference is the sorted training column (exact), so the monitor's values equal
    scipy's reference implementations applied to the training data itself."""
    prof, sample, train = stored_profile["profile"], stored_profile["sample"], stored_profile["train"]
    assert prof["exact"] is True
    current = _frame(np.random.default_rng(2), 700, shift=0.3)
    for col in ("amount", "status"):
        ref_raw = train[col].dropna().to_numpy()
        cur_raw = current[col].to_numpy()
        got = stats.numeric_drift(
            sample[col], cur_raw, np.asarray(prof["columns"][col]["psi_edges"]), prof["columns"][col]["std"]
        )
        ks = sps.ks_2samp(ref_raw, cur_raw[~np.isnan(cur_raw)])
        assert abs(got["ks"] - ks.statistic) < TOL and abs(got["ks_pvalue"] - ks.pvalue) < TOL
        w = sps.wasserstein_distance(ref_raw, cur_raw[~np.isnan(cur_raw)]) / np.std(ref_raw)
        assert abs(got["wasserstein"] - w) < TOL
    got = stats.categorical_drift(prof["columns"]["segment"]["counts"], current["segment"].tolist())
    cats = ["a", "b", "c"]
    ref_counts = np.array([(train["segment"] == c).sum() for c in cats], dtype=float)
    cur_counts = np.array([(current["segment"] == c).sum() for c in cats], dtype=float)
    js = jensenshannon(ref_counts / ref_counts.sum(), cur_counts / cur_counts.sum(), base=2)
    chi = sps.chisquare(cur_counts, ref_counts / ref_counts.sum() * cur_counts.sum())
    assert abs(got["jensen_shannon"] - js) < TOL
    assert abs(got["chi_square"] - chi.statistic) < TOL and abs(got["chi_square_pvalue"] - chi.pvalue) < TOL


def test_bootstrap_formulas_equal_scipy_on_resamples():
    """The vectorised statistics used for noise floors, on counts of real resamples."""
    rng = np.random.default_rng(3)
    reference = np.sort(np.round(rng.normal(0, 2, 4000), 1))  # heavy ties
    values, ids = np.unique(reference, return_inverse=True)
    edges = stats.psi_edges(reference, 10)
    cur_rows, ref_rows, samples = [], [], []
    for _ in range(5):
        a, b = rng.integers(0, len(reference), 600), rng.integers(0, len(reference), len(reference))
        cur_rows.append(np.bincount(ids[a], minlength=len(values)))
        ref_rows.append(np.bincount(ids[b], minlength=len(values)))
        samples.append((reference[a], reference[b]))
    got = stats.count_statistics(values, np.array(cur_rows), np.array(ref_rows), edges, float(reference.std()))
    for i, (a, b) in enumerate(samples):
        assert abs(got["ks"][i] - sps.ks_2samp(b, a).statistic) < TOL
        assert abs(got["wasserstein"][i] - sps.wasserstein_distance(b, a) / reference.std()) < TOL
        expected_psi = stats.psi(stats.bin_shares(b, edges), stats.bin_shares(a, edges))
        assert abs(got["psi"][i] - expected_psi) < TOL
    cur = rng.multinomial(500, [0.5, 0.3, 0.2], size=4)
    ref = rng.multinomial(3000, [0.5, 0.3, 0.2], size=4)
    cat = stats.category_count_statistics(cur, ref)
    for i in range(4):
        assert abs(cat["jensen_shannon"][i] - jensenshannon(ref[i] / ref[i].sum(), cur[i] / cur[i].sum(), base=2)) < TOL
        chi = sps.chisquare(cur[i], ref[i] / ref[i].sum() * cur[i].sum()).statistic
        assert abs(cat["chi_square"][i] - chi) < TOL


def test_noise_floor_matches_the_ks_asymptotics_and_pvalues_are_calibrated():
    rng = np.random.default_rng(4)
    reference = np.sort(rng.normal(size=8000))
    null = stats.null_numeric(reference, 2000, stats.psi_edges(reference, 10), 1.0, 1000, rng)
    # Kolmogorov's 95% critical value for two samples: 1.358 * sqrt(1/n + 1/m).
    assert null["ks"][949] == pytest.approx(1.358 * np.sqrt(1 / 2000 + 1 / 8000), rel=0.1)
    # Fresh samples from the same distribution get roughly uniform calibrated p-values.
    pvalues = [
        stats.calibrated_pvalue(null["ks"], sps.ks_2samp(reference, rng.normal(size=2000)).statistic)
        for _ in range(200)
    ]
    assert 0.02 <= np.mean(np.asarray(pvalues) < 0.05) <= 0.10
    assert stats.calibrated_pvalue(null["ks"], 1.0) == pytest.approx(1 / 1001)


def test_benjamini_hochberg_matches_scipy():
    rng = np.random.default_rng(5)
    for _ in range(20):
        p = np.concatenate([rng.random(20), rng.random(4) * 0.004])
        expected = sps.false_discovery_control(p, method="bh") <= 0.05
        assert stats.benjamini_hochberg(p.tolist(), 0.05) == expected.tolist()
    assert stats.benjamini_hochberg([0.01, 0.04, 0.03, 0.005, 0.5], 0.05) == [True, True, True, True, False]


def test_cbpe_estimates_realized_metrics_on_calibrated_scores():
    rng = np.random.default_rng(6)
    p = rng.beta(2, 5, 40000)
    y = (rng.random(len(p)) < p).astype(int)
    est = performance.estimated_metrics(p, p, 0.35)
    real = performance.realized_metrics(y, p, 0.35)
    for metric in ("roc_auc", "pr_auc", "precision", "recall", "positive_rate"):
        assert est[metric] == pytest.approx(real[metric], abs=0.015), metric
    assert real["roc_auc"] == pytest.approx(roc_auc_score(y, p))


def test_quantised_sample_sizes():
    assert [quantised_size(n) for n in (57, 999, 2254, 2333, 33333)] == [57, 1000, 2300, 2300, 33000]


# --------------------------------------------------------------------------- policy

AS_OF = dt.date(2025, 3, 12)
IMPORTANT = ["PAY_0", "LIMIT_BAL"]
GOOD = {"rows": 2000, "roc_auc": 0.78}


DEFAULT_POLICY = RetrainPolicyConfig()


def _decide(pol=DEFAULT_POLICY, drifted=("PAY_0",), breaks=(), realized=None, estimated=GOOD, history=(), as_of=AS_OF):
    return policy.decide(
        pol,
        as_of,
        IMPORTANT,
        {"calibrated": list(drifted), "fixed": list(drifted)},
        list(breaks),
        realized,
        estimated,
        list(history),
    )


def test_policy_retrains_on_important_drift_only():
    assert _decide()["retrain"] is True
    assert "PAY_0" in _decide()["reason"]
    unimportant = _decide(drifted=("AGE",))
    assert unimportant["retrain"] is False and unimportant["drifted_features"] == ["AGE"]


def test_policy_never_retrains_on_a_data_quality_break():
    d = _decide(breaks=["LIMIT_BAL: missing share 100.0%"], realized={"rows": 900, "roc_auc": 0.55})
    assert d["retrain"] is False
    assert d["triggers"] and any("data-quality break" in a for a in d["alerts"])
    assert "data-quality break" in d["reason"]


def test_policy_persistence_needs_consecutive_runs():
    pol = RetrainPolicyConfig(persistence_runs=2)
    assert _decide(pol)["retrain"] is False
    prev = {"as_of": "2025-03-05", "retrain": False, "drifted_features": ["PAY_0"]}
    assert _decide(pol, history=[prev])["retrain"] is True
    gap = {"as_of": "2025-03-05", "retrain": False, "drifted_features": []}
    assert _decide(pol, history=[prev | {"as_of": "2025-02-26"}, gap])["retrain"] is False


def test_policy_performance_floors():
    d = _decide(drifted=(), realized={"rows": 900, "roc_auc": 0.55})
    assert d["retrain"] is True and "realized roc_auc 0.550 < 0.7" in d["reason"]
    too_few = _decide(drifted=(), realized={"rows": 100, "roc_auc": 0.55})
    assert too_few["retrain"] is False
    assert _decide(drifted=(), estimated={"rows": 2000, "roc_auc": 0.6})["retrain"] is True


def test_policy_cooldown_and_limit():
    last = {"as_of": "2025-03-05", "retrain": True, "drifted_features": ["PAY_0"]}
    d = _decide(history=[last])
    assert d["retrain"] is False and any("cooldown" in s for s in d["suppressed_by"])
    assert any("suppressed" in a for a in d["alerts"])
    pol = RetrainPolicyConfig(cooldown_days=0, max_retrains=2, period_days=30)
    two = [last | {"as_of": "2025-02-20"}, last]
    limited = _decide(pol, history=two)
    assert limited["retrain"] is False and any("limit" in s for s in limited["suppressed_by"])
    assert _decide(pol, history=[last])["retrain"] is True
    # A rerun of the same date does not count itself as history.
    assert _decide(history=[last | {"as_of": AS_OF.isoformat()}])["retrain"] is True


def test_large_sample_statistics_equal_scipy_including_ties_and_missing():
    """Above scipy's exact-KS size the p-value is its asymptotic one; ties (a discrete column)
    and missing values are handled as scipy and `bin_shares` handle them."""
    rng = np.random.default_rng(7)
    for ref_raw, cur_raw in (
        (rng.normal(0, 1, 12_000), rng.normal(0.05, 1.1, 30_000)),
        (rng.integers(-2, 9, 15_000).astype(float), rng.integers(-2, 10, 40_000).astype(float)),
    ):
        cur_raw[::97] = np.nan
        ref_sorted = np.sort(ref_raw)
        edges = stats.psi_edges(ref_sorted, 10)
        got = stats.numeric_drift(ref_sorted, cur_raw, edges, float(np.std(ref_raw)))
        present = cur_raw[~np.isnan(cur_raw)]
        ks = sps.ks_2samp(ref_raw, present)
        assert abs(got["ks"] - ks.statistic) < TOL and abs(got["ks_pvalue"] - ks.pvalue) < TOL
        w = sps.wasserstein_distance(ref_raw, present) / np.std(ref_raw)
        assert abs(got["wasserstein"] - w) < TOL
        expected_psi = stats.psi(stats.bin_shares(ref_raw, edges), stats.bin_shares(present, edges))
        assert abs(got["psi"] - expected_psi) < TOL
    values = pd.Series(["a", "b", None, "b", "c", np.nan, "b"] * 1000)
    for current in (values, values.astype("category"), values.tolist()):
        got = stats.categorical_drift({"a": 10, "b": 10, "c": 5}, current)
        cur_counts = np.array([1000, 3000, 1000], dtype=float)
        ref = np.array([10, 10, 5], dtype=float)
        chi = sps.chisquare(cur_counts, ref / ref.sum() * cur_counts.sum())
        assert abs(got["chi_square"] - chi.statistic) < TOL
        js = jensenshannon(ref / ref.sum(), cur_counts / cur_counts.sum(), base=2)
        assert abs(got["jensen_shannon"] - js) < TOL


# Drift over the week before AS_OF; with a 7-day label delay, a retraining now ends on 2025-03-05.
DRIFT_WEEK = (dt.date(2025, 3, 5), dt.date(2025, 3, 11))


def _decide_labelless(pol, history=(), as_of=AS_OF, drift_week=DRIFT_WEEK, label_delay=7, **kwargs):
    return policy.decide(
        pol,
        as_of,
        IMPORTANT,
        {"calibrated": list(kwargs.get("drifted", ("PAY_0",))), "fixed": []},
        [],
        kwargs.get("realized"),
        GOOD,
        list(history),
        drift_period=drift_week,
        labelled_until=as_of - dt.timedelta(days=label_delay),
    )


def test_label_less_drift_retrains_saying_the_window_misses_the_drifted_days():
    d = _decide_labelless(DEFAULT_POLICY)
    assert d["retrain"] is True and d["label_backed"] is False
    assert d["drift_coverage"] == {
        "drift_period": ["2025-03-05", "2025-03-11"],
        "training_window_ends": "2025-03-05",
        "days": 7,
        "labelled_days": 1,
        "inside_training_window": False,
    }
    assert d["reason"].startswith("retraining: drift in important feature(s) PAY_0. Label-less drift:")
    assert "training window ends 2025-03-05 and holds 1 of its 7 days" in d["reason"]
    # Labels already covering the drifted days: nothing to say.
    covered = _decide_labelless(DEFAULT_POLICY, label_delay=0)
    assert covered["retrain"] is True and covered["drift_coverage"]["inside_training_window"] is True
    assert "Label-less" not in covered["reason"]
    # Realized degradation is label-backed: retrained without the warning.
    backed = _decide_labelless(DEFAULT_POLICY, realized={"rows": 900, "roc_auc": 0.55})
    assert backed["retrain"] is True and backed["label_backed"] is True and "Label-less" not in backed["reason"]


def test_label_less_drift_waits_for_labels_then_retrains():
    wait = RetrainPolicyConfig(label_less_drift="wait")
    first = _decide_labelless(wait)
    assert first["retrain"] is False and first["triggers"] == []
    assert first["waiting_for_labels"] == {
        "since": "2025-03-12",
        "drift_period": ["2025-03-05", "2025-03-11"],
        "triggers": ["drift in important feature(s) PAY_0"],
    }
    assert first["reason"].startswith("retraining waits for labels: drift in important feature(s) PAY_0 over")
    assert "–" not in first["reason"] and "None" not in first["reason"]
    # A week later the drift is gone from the features but labels still lag: keep waiting.
    later = _decide_labelless(
        wait,
        history=[first],
        as_of=dt.date(2025, 3, 19),
        drift_week=(dt.date(2025, 3, 12), dt.date(2025, 3, 18)),
        label_delay=9,
        drifted=(),
    )
    assert later["retrain"] is False and later["waiting_for_labels"] == first["waiting_for_labels"]
    assert "waits for labels" in later["reason"]
    # Once labels reach the end of the drifted week, the pending drift triggers the retraining.
    covered = _decide_labelless(
        wait,
        history=[first, later],
        as_of=dt.date(2025, 3, 26),
        drift_week=(dt.date(2025, 3, 19), dt.date(2025, 3, 25)),
        label_delay=7,
        drifted=(),
    )
    assert covered["retrain"] is True and covered["label_backed"] is True
    assert "labels now cover the drift of 2025-03-05..2025-03-11 (waiting since 2025-03-12" in covered["reason"]
    assert covered["waiting_for_labels"] is None
    # After that retraining nothing is pending any more.
    after = _decide_labelless(wait, history=[first, later, covered], as_of=dt.date(2025, 4, 2), drifted=())
    assert after["retrain"] is False and after["waiting_for_labels"] is None


def test_report_text_names_what_is_missing_instead_of_placeholders():
    from pipeline.monitoring.report import calibration_text, performance_text

    record = {
        "drift_coverage": {
            "drift_period": ["2025-03-01", "2025-03-07"],
            "training_window_ends": "2025-02-22",
            "days": 7,
            "labelled_days": 0,
            "inside_training_window": False,
        },
        "waiting_for_labels": None,
    }
    text = performance_text({"roc_auc": 0.71, "precision": 0.5, "recall": 0.4}, {}, record)
    assert "ROC AUC 0.71" in text
    assert (
        "No realized performance yet: none of the scored days has labels (labels are due for days up to "
        "2025-02-22; the newest labelled day is 2025-02-22)" in text  # a record from before newest_labelled_day
    )
    late = performance_text({"roc_auc": 0.71}, {}, {**record, "newest_labelled_day": "2025-02-10"})
    assert "the newest labelled day is 2025-02-10; labels are late: see the freshness check)" in late
    none = performance_text({"roc_auc": 0.71}, {}, {**record, "newest_labelled_day": None})
    assert "the newest labelled day is none; labels are late" in none
    assert "A retraining now would train on days up to 2025-02-22: 0 of the 7 monitored days" in text
    labelled = performance_text({"roc_auc": 0.7}, {"rows": 900, "roc_auc": 0.66}, {})
    assert "Realized performance on 900 labelled rows: ROC AUC 0.66." in labelled
    for sentence in (text, late, none, labelled, performance_text({}, {}, {}), calibration_text(None)):
        assert "–" not in sentence and "None" not in sentence
    assert calibration_text({"resamples": 1000, "sample_size": 5000}).startswith("Calibrated p: share of 1000")


def _correlated(rng, n, p=6):
    """Features driven by two shared factors (like the credit data's six PAY_* and BILL_AMT* columns)."""
    factors = rng.normal(size=(n, 2))
    loadings = np.array([[1.0, 0.9, 0.8, 0.0, 0.1, 0.0], [0.0, 0.1, 0.0, 1.0, 0.9, 0.8]])[:, :p]
    return factors @ loadings + 0.3 * rng.normal(size=(n, p))


def test_multivariate_drift_sees_broken_correlations_that_no_column_shows():
    from pipeline.monitoring import multivariate

    rng = np.random.default_rng(3)
    columns = [f"x{i}" for i in range(6)]
    model, errors = multivariate.fit(_correlated(rng, 20_000), _correlated(rng, 5_000), columns, 0.65)
    assert len(model["components"]) == 2 and model["explained_variance"] >= 0.65
    assert np.all(np.diff(errors) >= 0) and len(errors) == 5_000

    quiet = [multivariate.assess(model, errors, _correlated(rng, 800), 500, 0.05, 0.2, s) for s in range(30)]
    assert sum(r["flagged"] for r in quiet) == 0
    assert 0.1 < np.median([r["calibrated_pvalue"] for r in quiet]) < 0.9  # centred under no drift

    broken = _correlated(rng, 800)
    for j in (0, 1, 2):  # shuffled on their own: every marginal stays, the first factor is gone
        broken[:, j] = rng.permutation(broken[:, j])
    for j in range(6):
        assert sps.ks_2samp(broken[:, j], _correlated(rng, 5_000)[:, j]).pvalue > 1e-3
    result = multivariate.assess(model, errors, broken, 500, 0.05, 0.2, 0)
    assert result["flagged"] and result["increase"] > 0.2 and result["calibrated_pvalue"] < 0.01
    assert {d["feature"] for d in result["drivers"][:3]} == {"x0", "x1", "x2"}
    assert "multivariate drift (PCA reconstruction error" in multivariate.describe(result)

    # Missing values take the reference mean: they add no error and never produce NaN.
    holes = _correlated(rng, 800)
    holes[::7, 2] = np.nan
    assert np.isfinite(multivariate.assess(model, errors, holes, 500, 0.05, 0.2, 0)["value"])


def test_multivariate_noise_floor_bootstrap_and_normal_law_agree():
    from pipeline.monitoring import multivariate

    rng = np.random.default_rng(5)
    errors = np.sort(rng.lognormal(0, 0.6, 5_000))
    exact = multivariate.null_means(errors, 2_000, 1_000, rng)  # 2e6 draws: the bootstrap
    normal = multivariate.null_means(errors, 30_000, 1_000, rng)  # 3e7 draws: the mean's normal law
    assert len(exact) == len(normal) == 1_000 and np.all(np.diff(exact) >= 0)
    sd = errors.std()
    assert abs(exact.std() - sd / np.sqrt(2_000)) < 0.1 * sd / np.sqrt(2_000)
    assert abs(normal.std() - sd / np.sqrt(30_000)) < 0.1 * sd / np.sqrt(30_000)
    assert abs(exact.mean() - errors.mean()) < 5 * sd / np.sqrt(2_000 * 1_000)  # 5 standard errors


def test_policy_retrains_on_persistent_multivariate_drift():
    joint = {
        "flagged": True,
        "value": 3.1,
        "reference": 1.8,
        "increase": 0.72,
        "calibrated_pvalue": 0.001,
        "drivers": [{"feature": "BILL_AMT2"}, {"feature": "BILL_AMT3"}],
    }
    as_of = dt.date(2025, 3, 8)
    once = policy.decide(RetrainPolicyConfig(), as_of, ["PAY_0"], {}, [], None, None, [], multivariate=joint)
    assert once["retrain"] and "multivariate drift (PCA reconstruction error 3.100 vs 1.800, +72%" in once["reason"]
    assert "driven by BILL_AMT2, BILL_AMT3" in once["reason"] and once["multivariate_drift"] == joint
    twice = RetrainPolicyConfig(persistence_runs=2)
    first = policy.decide(twice, as_of, ["PAY_0"], {}, [], None, None, [], multivariate=joint)
    assert not first["retrain"]  # not yet persistent
    later = as_of + dt.timedelta(days=7)
    second = policy.decide(twice, later, ["PAY_0"], {}, [], None, None, [first], multivariate=joint)
    assert second["retrain"] and "multivariate drift" in second["reason"]
    calm = policy.decide(RetrainPolicyConfig(), as_of, ["PAY_0"], {}, [], None, None, [], multivariate=None)
    assert not calm["retrain"] and calm["multivariate_drift"] is None


def test_segment_breaches_alert_and_retrain_only_when_the_policy_says():
    breach = "segment EDUCATION=3 week 2025-W10: TPR 0.585 vs 0.823 at training (drop 0.237 > 0.15, ...)"
    as_of = dt.date(2025, 3, 22)
    default = policy.decide(RetrainPolicyConfig(), as_of, [], {}, [], None, None, [], segment_breaches=[breach])
    assert not default["retrain"] and default["alerts"] == [f"segment breach: {breach}"]
    assert default["reason"].startswith("no retraining, 1 segment breach(es) alert on-call")
    eager = RetrainPolicyConfig(retrain_on_segment_breach=True)
    retrained = policy.decide(eager, as_of, [], {}, [], None, None, [], segment_breaches=[breach])
    assert retrained["retrain"] and retrained["label_backed"] and f"segment breach: {breach}" in retrained["reason"]


def test_segment_week_judges_tpr_drops_by_evidence_not_by_noise():
    from pipeline.monitoring.segments import _week

    config = load_config()
    rng = np.random.default_rng(11)
    n = 1000  # group 3: ~100 rows (judged: min_group_size is 50)
    part = pd.DataFrame({"EDUCATION": rng.choice(["1", "2", "3"], n, p=[0.45, 0.45, 0.1]), "threshold": 0.5})
    part["y"] = (rng.random(n) < 0.3).astype(float)
    part["score"] = np.where(part["y"] == 1, rng.uniform(0.4, 1.0, n), rng.uniform(0.0, 0.6, n))
    reference = {"1": 0.83, "2": 0.83, "3": 0.83}  # the generator's TPR: P(U(0.4, 1) >= 0.5)
    breaches: list = []
    report = _week("EDUCATION", "2025-W10", part, reference, config, breaches)
    assert breaches == [] and {g["group"] for g in report["groups"]} == {"1", "2", "3"}
    # Group 3's positives now score like negatives: its TPR collapses, with evidence.
    hidden = (part["EDUCATION"] == "3") & (part["y"] == 1)
    part.loc[hidden, "score"] = rng.uniform(0.0, 0.5, int(hidden.sum()))
    report = _week("EDUCATION", "2025-W10", part, reference, config, breaches)
    assert breaches[0].startswith("segment EDUCATION=3 week 2025-W10: TPR 0.000 vs 0.830")
    # The gap to the other groups is credibly over the gate's limit too (a z-test, not the point value).
    assert any("equal-opportunity difference" in b and "group '3'" in b for b in breaches[1:])
    three = next(g for g in report["groups"] if g["group"] == "3")
    assert three["tpr_drop"] == pytest.approx(0.83) and three["tpr_pvalue"] < 1e-6


def test_attribution_drift_flags_a_feature_the_model_leans_on_differently():
    from sklearn.linear_model import LogisticRegression

    from pipeline.monitoring import attribution

    rng = np.random.default_rng(21)

    def frame(n, x0_scale=1.0):
        return pd.DataFrame({"x0": rng.normal(0, x0_scale, n), "x1": rng.normal(size=n), "x2": rng.normal(size=n)})

    train = frame(4000)
    y = (2.0 * train["x0"] + 0.5 * train["x1"] + rng.normal(size=4000) > 0).astype(int)
    model = LogisticRegression().fit(train, y)
    ref = attribution.reference(model, frame(2000), random_state=3)
    assert ref["mean"]["x0"] > ref["mean"]["x1"] > ref["mean"]["x2"] >= 0 and all(v > 0 for v in ref["sd"].values())

    quiet = attribution.compare(ref, attribution.measure(model, frame(1000), rng), 1000)
    assert [r["feature"] for r in quiet if r["flagged"]] == []
    # x0 now varies a third as much: shuffling it moves the scores far less.
    moved = attribution.compare(ref, attribution.measure(model, frame(1000, x0_scale=0.3), rng), 1000)
    assert moved[0]["feature"] == "x0" and moved[0]["flagged"] and moved[0]["change"] < 0
    # With x0 quieter, scores sit where the logistic curve is steep: x1 moves them more than before.
    x1 = next(r for r in moved if r["feature"] == "x1")
    assert x1["change"] > 0
    # A smaller window is measured with more noise: the same change is further within the floor.
    assert (
        attribution.compare(ref, {**ref["mean"], "x0": ref["mean"]["x0"] * 0.8}, 50)[0]["distance"]
        < (attribution.compare(ref, {**ref["mean"], "x0": ref["mean"]["x0"] * 0.8}, 1000)[0]["distance"])
    )
