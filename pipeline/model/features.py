"""The model: an sklearn Pipeline of preprocessing and estimator, built from the schema."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from pipeline.core.settings import TrainingConfig
from pipeline.data.source import Schema


def _estimator(training: TrainingConfig):
    params = dict(training.estimator_params)
    if training.estimator == "hist_gradient_boosting":
        return HistGradientBoostingClassifier(random_state=training.random_state, **params)
    if training.estimator == "random_forest":
        return RandomForestClassifier(random_state=training.random_state, n_jobs=1, **params)
    return LogisticRegression(max_iter=params.pop("max_iter", 2000), **params)


def build_model(schema: Schema, training: TrainingConfig) -> Pipeline:
    numeric = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
    categorical = Pipeline(
        [
            ("impute", SimpleImputer(strategy="constant", fill_value="__missing__")),
            # Unseen categories at scoring time become all-zero rows instead of errors.
            ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False, min_frequency=5)),
        ]
    )
    pre = ColumnTransformer(
        [("numeric", numeric, list(schema.numeric)), ("categorical", categorical, list(schema.categorical))],
        remainder="drop",
    )
    return Pipeline([("preprocess", pre), ("model", _estimator(training))])


def feature_frame(frame: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """The columns the model reads, with text columns as plain objects (sklearn's imputers
    and encoders expect NaN/None, not pandas' string NA)."""
    missing = [c for c in schema.features if c not in frame.columns]
    if missing:
        raise ValueError(f"input lacks feature column(s) {missing}")
    out = frame.loc[:, list(schema.features)].copy()
    for col in schema.categorical:
        values = out[col].astype(object)
        out[col] = values.where(values.notna(), np.nan)
    return out


def target_vector(labels: pd.Series, positive_class: str) -> np.ndarray:
    return (labels.astype(str) == str(positive_class)).to_numpy(dtype="int64")
