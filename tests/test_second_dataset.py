"""Another tabular binary-classification dataset through the whole pipeline, by config only."""

import shutil

import pytest
from conftest import ROOT
from helpers import read_parquet_objects, run_dag

from pipeline.core.settings import load_config
from pipeline.core.storage import open_storage
from pipeline.model import registry

pytestmark = pytest.mark.e2e


def test_breast_cancer_runs_through_both_dags(dagbag, tmp_path, monkeypatch):
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer(as_frame=True)
    frame = data.frame.drop(columns="target")
    frame.insert(0, "patient_id", [f"P{i:05d}" for i in range(len(frame))])  # text ids
    frame["diagnosis"] = data.target.map({0: "malignant", 1: "benign"})
    frame.to_csv(tmp_path / "breast_cancer.csv", index=False)
    shutil.copy(ROOT / "tests" / "params_breast_cancer.yaml", tmp_path / "params.yaml")
    monkeypatch.setenv("PIPELINE_PARAMS", str(tmp_path / "params.yaml"))
    config = load_config()

    assert run_dag(dagbag, "training_pipeline", config.demo.train_as_of) == "success"
    storage = open_storage(config.storage.root)
    version = registry.champion_version(storage, "breast_cancer_lr")
    manifest = registry.read_manifest(storage, "breast_cancer_lr", version)
    assert len(manifest["schema"]["numeric"]) == 30 and manifest["schema"]["categorical"] == []
    assert manifest["metrics"]["roc_auc"] > 0.9

    total = 0
    for day in config.demo.score_days:
        assert run_dag(dagbag, "batch_scoring", day) == "success"
        out = read_parquet_objects(storage, f"predictions/breast_cancer_lr/dt={day}")
        raw = read_parquet_objects(storage, f"raw/breast_cancer/dt={day}")
        assert len(out) == len(raw) > 0
        assert out["patient_id"].str.startswith("P").all()
        total += len(out)
    assert (tmp_path / "great_expectations" / "expectations" / "breast_cancer_raw_batch.json").exists()
    assert total > 30
