import pydantic
import pytest
from conftest import ROOT, write_params

from pipeline import steps
from pipeline.core.errors import ConfigError
from pipeline.core.settings import load_config


def test_params_load_into_frozen_typed_config():
    config = load_config(ROOT / "params.yaml")
    assert config.dataset.id_column == "ID"
    assert config.validation.ranges["AGE"] == (18.0, 100.0)
    assert config.dataset.source.uri.startswith(str(ROOT))  # relative to the params file
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        config.dataset = None
    with pytest.raises(TypeError):
        config.validation.ranges["AGE"] = (0, 1)


def test_env_selects_params_and_storage(tmp_path, monkeypatch):
    path = write_params(tmp_path, scoring={"threshold": 0.42})
    monkeypatch.setenv("PIPELINE_PARAMS", str(path))
    monkeypatch.setenv("PIPELINE_STORAGE_URI", "s3://bucket/prefix")
    config = load_config()
    assert config.scoring.threshold == 0.42
    assert config.storage.root == "s3://bucket/prefix"


@pytest.mark.parametrize(
    "section,values,message",
    [
        ("training", {"window_dayz": 3}, r"unknown key\(s\) \['window_dayz'\]"),
        ("scoring", {"threshold": 1.5}, "scoring.threshold must be between 0 and 1"),
        ("gate", {"min_metrics": {"auc": 0.7}}, "unknown metric 'auc'"),
        ("training", {"window_days": "many"}, "expected a number"),
        ("monitoring", {"multivariate": {"min_increase": -0.1}}, r"monitoring.multivariate.min_increase must be >= 0"),
        ("monitoring", {"segments": {"max_tpr_drop": 1.5}}, r"monitoring.segments.max_tpr_drop must be in \[0, 1\)"),
        ("scoring", {"arrival_settle_seconds": -5}, r"scoring.arrival_settle_seconds must be in \[0, 86400\]"),
        ("scoring", {"arrival_poll_seconds": 0}, r"scoring.arrival_poll_seconds must be at least 1"),
        ("monitoring", {"multivariate": {"variance": float("nan")}}, "expected a finite number"),
    ],
)
def test_bad_params_are_named(tmp_path, section, values, message):
    # steps.settings: load_config, then the names only a stage knows (metrics, statistics)
    with pytest.raises(ConfigError, match=message):
        steps.settings(str(write_params(tmp_path, **{section: values})))


def test_fingerprint_ignores_paths_but_not_training_params(tmp_path):
    a = load_config(write_params(tmp_path / "a"))
    b = load_config(write_params(tmp_path / "b"))
    c = load_config(write_params(tmp_path / "c", training={"random_state": 7}))
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


def test_params_schema_is_current_and_validates_params(tmp_path):
    import json

    import jsonschema
    import yaml

    from pipeline.cli import main

    assert main(["--out", str(tmp_path / "schema.json"), "params-schema"]) == 0
    schema = json.loads((tmp_path / "schema.json").read_text())
    # The committed file editors use is what the settings say (regenerate: python -m pipeline
    # --out params.schema.json params-schema).
    assert schema == json.loads((ROOT / "params.schema.json").read_text())
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    jsonschema.validate(params, schema)
    params["training"]["window_dayz"] = 3
    with pytest.raises(jsonschema.ValidationError, match="window_dayz"):
        jsonschema.validate(params, schema)
