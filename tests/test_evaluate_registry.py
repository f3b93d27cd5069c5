"""Metrics, the gate, and the registry's integrity rules."""

import numpy as np
import pytest
from sklearn.dummy import DummyClassifier
from sklearn.metrics import roc_auc_score

from pipeline.core.storage import open_storage
from pipeline.model import registry
from pipeline.model.gate import gate_decision
from pipeline.model.metrics import classification_metrics


def test_metrics_match_sklearn_and_threshold():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    score = np.clip(y * 0.3 + rng.random(500) * 0.7, 0, 1)
    m = classification_metrics(y, score, threshold=0.5)
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, score))
    c = m["confusion"]
    assert c["tp"] + c["fp"] == int((score >= 0.5).sum())
    assert m["recall"] == pytest.approx(c["tp"] / (c["tp"] + c["fn"]))
    assert m["rows"] == 500 and m["positives"] == int(y.sum())


def test_single_class_holdout_is_an_error():
    with pytest.raises(ValueError, match="single class"):
        classification_metrics(np.zeros(10), np.linspace(0, 1, 10), 0.5)


def test_gate_names_every_breach():
    metrics = {"roc_auc": 0.65, "pr_auc": 0.5, "brier": 0.3}
    d = gate_decision(metrics, {"roc_auc": 0.7, "pr_auc": 0.4}, {"brier": 0.2})
    assert not d["passed"]
    assert d["reasons"] == ["roc_auc 0.6500 is below the floor 0.7", "brier 0.3000 is above the ceiling 0.2"]
    assert gate_decision(metrics, {"pr_auc": 0.4}, {})["passed"]


@pytest.fixture
def store(tmp_path):
    return open_storage(str(tmp_path / "root"))


def _fitted():
    return DummyClassifier(strategy="prior").fit(np.zeros((4, 1)), [0, 1, 1, 0])


def test_versions_are_immutable_and_verified(store):
    m = registry.save_version(store, "m", "v1", _fitted(), {"note": "first"})
    again = registry.save_version(store, "m", "v1", DummyClassifier().fit([[0]], [1]), {"note": "second"})
    assert again["artifact_sha256"] == m["artifact_sha256"] and again["note"] == "first"
    model, manifest = registry.load_model(store, "m", "v1")
    assert model.predict_proba([[0]])[0, 1] == pytest.approx(0.5)
    store.write_bytes("models/m/versions/v1/model.joblib", b"tampered")
    with pytest.raises(registry.RegistryError, match="does not match its manifest"):
        registry.load_model(store, "m", "v1")


def test_promotion_needs_a_passed_gate(store):
    registry.save_version(store, "m", "v1", _fitted(), {})
    with pytest.raises(registry.RegistryError, match="no gate decision"):
        registry.promote(store, "m", "v1", "test")
    store.write_json("models/m/versions/v1/gate.json", {"passed": False, "reasons": ["roc_auc too low"]})
    with pytest.raises(registry.RegistryError, match="roc_auc too low"):
        registry.promote(store, "m", "v1", "test")
    with pytest.raises(registry.RegistryError, match="no champion yet"):
        registry.champion_version(store, "m")
    store.write_json("models/m/versions/v1/gate.json", {"passed": True, "reasons": []})
    registry.promote(store, "m", "v1", "test")
    assert registry.champion_version(store, "m") == "v1"
    # Status comes from the aliases, never from the (immutable) manifest.
    assert [m["status"] for m in registry.list_versions(store, "m")] == ["champion"]
    assert "status" not in registry.read_manifest(store, "m", "v1")


def test_champion_at_reads_the_history_of_alias_moves(tmp_path):
    import datetime as dt

    from pipeline.core import layout

    storage = open_storage(str(tmp_path / "storage"))
    moves = [
        ("2025-03-01T10:00:00.000000+00:00", "v1", "done"),
        ("2025-03-05T09:00:00.000000+00:00", "v2", "refused"),  # a refused move changes nothing
        ("2025-03-10T12:00:00.000000+00:00", "v3", "done"),
    ]
    for i, (at, version, outcome) in enumerate(moves):
        event = {
            "model": "m",
            "at": at,
            "action": "promote",
            "alias": "champion",
            "version": version,
            "outcome": outcome,
        }
        storage.write_json(f"{layout.model_history('m')}/{i:04d}.json", event)

    def at(text):
        return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)

    assert registry.champion_at(storage, "m", at("2025-02-28T00:00:00")) is None
    assert registry.champion_at(storage, "m", at("2025-03-06T00:00:00")) == "v1"
    assert registry.champion_at(storage, "m", at("2025-03-11T00:00:00")) == "v3"


@pytest.mark.parametrize("version", ["../../contracts/credit_default", "a/b", "..", "", "x" * 200])
def test_a_version_id_never_walks_the_storage_tree(tmp_path, version):
    storage = open_storage(str(tmp_path / "storage"))
    with pytest.raises(registry.RegistryError, match="is not a version id of m"):
        registry.version_exists(storage, "m", version)
    with pytest.raises(registry.RegistryError, match="is not a version id of m"):
        registry.read_manifest(storage, "m", version)
