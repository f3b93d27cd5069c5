"""One params file, loaded into one frozen, typed config object.

DVC stages, the CLI and the Airflow tasks all call :func:`load_config`, so they
read the same values. ``PIPELINE_PARAMS`` selects another params file; the
storage root can be overridden with ``PIPELINE_STORAGE_URI`` (deployments point
the same params at S3 without editing them).

Relative paths in the params file are resolved against the file's directory, so
a params file works from any working directory.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import datetime as dt
import hashlib
import json
import math
import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from pipeline.core.errors import (
    ConfigError,
)

PARAMS_ENV = "PIPELINE_PARAMS"
STORAGE_ENV = "PIPELINE_STORAGE_URI"
DVC_REMOTE_ENV = "PIPELINE_DVC_REMOTE_URL"
DEFAULT_PARAMS = "params.yaml"


DEFAULT_NA_VALUES = ("", "nan", "NaN", "NA", "N/A", "null", "NULL", "None")


@dataclasses.dataclass(frozen=True)
class SourceConfig:
    # One file holding every day (days assigned by event time or a stable hash), or one
    # delivery per day: a template with {date} (e.g. s3://landing/credit/dt={date}/*.csv,
    # {date:%Y%m%d} for other spellings), optionally with glob characters.
    uri: str
    format: str = "csv"  # csv | parquet
    csv_delimiter: str = ","
    # Extra spellings of "missing", added to DEFAULT_NA_VALUES (e.g. ["?"]) ...
    na_values: tuple[str, ...] = ()
    # ... or, when true, used instead of them.
    replace_default_na_values: bool = False
    # The landing area every delivered file must resolve into (symlinks included). null: the
    # directory part of `uri` before its first {date} or glob character.
    root: str | None = None
    # Limits per day's delivery, enforced while reading (a gzip is never inflated past them):
    # decompressed bytes, and data rows. Over either, the delivery is quarantined with a verdict.
    max_bytes: int = 1 << 30
    max_rows: int = 5_000_000

    @property
    def missing_tokens(self) -> tuple[str, ...]:
        if self.replace_default_na_values:
            return tuple(self.na_values)
        return tuple(dict.fromkeys(DEFAULT_NA_VALUES + tuple(self.na_values)))

    @property
    def is_per_day(self) -> bool:
        return "{date" in self.uri

    @property
    def landing_root(self) -> str:
        """Where delivered files must stay: `root`, else the static directory part of `uri`."""
        if self.root:
            return self.root.rstrip("/")
        cuts = [i for i in (self.uri.find(ch) for ch in "{*?[") if i >= 0]
        static = self.uri[: min(cuts)] if cuts else self.uri
        return static.rsplit("/", 1)[0] if "/" in static else "."


@dataclasses.dataclass(frozen=True)
class TargetConfig:
    column: str
    positive_class: str


@dataclasses.dataclass(frozen=True)
class FeaturesConfig:
    # Columns not listed here (and not id/target/event time/PII/excluded) are
    # inferred from their content: numeric if every value parses as a number.
    numeric: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class BatchingConfig:
    """How the source is cut into daily batches and when labels arrive."""

    # Used only when the dataset has no event-time column: rows are assigned to
    # one of `days` days from `start_date` by a stable hash of their id.
    start_date: dt.date
    days: int = 30
    # Labels of day D become available on day D + label_delay_days.
    label_delay_days: int = 14


@dataclasses.dataclass(frozen=True)
class DatasetConfig:
    name: str
    source: SourceConfig
    target: TargetConfig
    batching: BatchingConfig
    # Without an id column a stable row key is derived from each row's values (ROW_KEY).
    id_column: str | None = None
    event_time_column: str | None = None
    features: FeaturesConfig = FeaturesConfig()
    sensitive_attributes: tuple[str, ...] = ()
    pii_columns: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class StorageConfig:
    root: str = "storage"
    # Airflow connection holding the S3 endpoint and credentials. The DAGs require it when storage
    # or the DVC remote is on S3 (a missing connection fails the task, never falls back); null:
    # boto3's standard chain (AWS_* variables, instance role). The CLI always uses that chain.
    aws_conn_id: str | None = "aws_default"
    # S3 budget: a hung endpoint fails within about attempts x (connect + read) seconds.
    connect_timeout_seconds: float = 5.0
    read_timeout_seconds: float = 15.0
    max_attempts: int = 3
    # Rows per Parquet row group in written partitions: the unit of mapped scoring's ranges.
    row_group_rows: int = 100_000
    # S3 publishes hold a lease object in the partition (renewed while uploading); a writer
    # killed mid-publish frees it when this expires (at once when it was on this host).
    publish_lease_seconds: float = 120.0
    # How long a second writer of the same partition waits for the lease before failing
    # (transient: Airflow retries it).
    publish_wait_seconds: float = 600.0


@dataclasses.dataclass(frozen=True)
class ValidationConfig:
    gx_root: str = "great_expectations"
    min_rows: int = 1
    max_rows: int | None = None
    # Share of nulls tolerated in a feature column before the batch fails.
    max_null_fraction: float = 0.05
    ranges: Mapping[str, tuple[float | None, float | None]] = dataclasses.field(
        default_factory=lambda: types.MappingProxyType({})
    )
    categories: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=lambda: types.MappingProxyType({}))
    # Share of values that must pass, per column and check (range | in_set | not_null);
    # unlisted: range and in_set 1.0, not_null 1 - max_null_fraction.
    mostly: Mapping[str, Mapping[str, float]] = dataclasses.field(default_factory=lambda: types.MappingProxyType({}))
    # A batch larger than this many times the contract's typical day fails.
    max_rows_factor: float = 5.0
    # Rows that cannot be typed (text in a number column, missing id, conflicting duplicate
    # ids): fail_batch, or quarantine_rows (they go to quarantine with their reason; the rest
    # publish) as long as they are at most max_bad_row_share of the delivery.
    row_policy: str = "fail_batch"
    max_bad_row_share: float = 0.0
    # A delivery with columns the contract does not know: fail | ignore (dropped, logged).
    extra_columns: str = "fail"
    # Labels: the share of labelled ids that the day's delivered batch does not have, tolerated
    # before the labels are quarantined (0: every label must belong to a delivered row).
    max_unknown_label_share: float = 0.0


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    # Labelled days used for a training run (the most recent ones).
    window_days: int = 30
    # The last days of the window are held out for evaluation (time split).
    holdout_days: int = 7
    cv_folds: int = 5
    random_state: int = 42
    estimator: str = "hist_gradient_boosting"  # or logistic_regression
    estimator_params: Mapping[str, Any] = dataclasses.field(default_factory=lambda: types.MappingProxyType({}))


@dataclasses.dataclass(frozen=True)
class GateConfig:
    # Absolute floors on holdout metrics; a candidate below any is not promoted.
    min_metrics: Mapping[str, float] = dataclasses.field(default_factory=lambda: types.MappingProxyType({}))
    # Ceilings for metrics where lower is better (e.g. brier).
    max_metrics: Mapping[str, float] = dataclasses.field(default_factory=lambda: types.MappingProxyType({}))
    # Champion vs candidate on the candidate's holdout: the lower bound of the paired-bootstrap
    # interval of (candidate - champion) on `primary_metric` must reach `min_improvement`
    # (negative: "not worse than" by that much).
    primary_metric: str = "roc_auc"
    min_improvement: float = -0.005
    bootstrap_resamples: int = 1000
    confidence: float = 0.95
    # Expected cost per 1,000 decisions: the candidate may not exceed the champion's by more.
    max_cost_increase: float = 0.0
    max_cost_per_1000: float | None = None
    # Wait for a human (Airflow HITL ApprovalOperator) between gate and register.
    require_approval: bool = False


@dataclasses.dataclass(frozen=True)
class CostConfig:
    """Cost of each kind of error, in any unit. With this section the decision threshold is the
    one that minimises expected cost on out-of-fold training predictions."""

    false_positive: float = 1.0
    false_negative: float = 1.0


@dataclasses.dataclass(frozen=True)
class FairnessConfig:
    min_group_size: int = 50  # smaller groups are reported as too small, not judged
    # Bin edges for numeric sensitive attributes (e.g. AGE: [30, 40, 50, 60]).
    bins: Mapping[str, tuple[float, ...]] = dataclasses.field(default_factory=lambda: types.MappingProxyType({}))
    min_demographic_parity_ratio: float | None = None  # min / max selection rate across groups
    max_equal_opportunity_difference: float | None = None  # max - min true positive rate


@dataclasses.dataclass(frozen=True)
class RegistryConfig:
    # Where a candidate that passes the gate goes: straight to `champion`, or to `challenger`
    # (shadow/canary scoring first; promote it later with `models promote`).
    promote_to: str = "champion"
    # Airflow connection whose password is the model signing key (pipeline/model/signing.py);
    # used by the DAGs when it exists, else PIPELINE_SIGNING_KEY / PIPELINE_SIGNING_KEY_FILE.
    signing_conn_id: str = "pipeline_signing"


@dataclasses.dataclass(frozen=True)
class ScoringConfig:
    # Used when params have no `cost:` section; otherwise the threshold is chosen by cost.
    threshold: float = 0.5
    # With a challenger: share of rows (stable hash of the row key) decided by the challenger
    # in the production partition. 0 = shadow only.
    canary_share: float = 0.0
    # Scale-out: a day is split into row-group ranges of about this many rows, each scored by
    # one mapped Airflow task, then published as one partition.
    rows_per_task: int = 250_000


@dataclasses.dataclass(frozen=True)
class ResourcesConfig:
    # Threads (OpenMP/BLAS, via threadpoolctl) one task may use. null: the machine's cores
    # divided by the tasks that run at once on it (PIPELINE_TASKS_PER_MACHINE, which the
    # Airflow glue sets from the executor's concurrency; 1 outside Airflow).
    threads_per_task: int | None = None


@dataclasses.dataclass(frozen=True)
class MaintenanceConfig:
    # Garbage collection removes staging directories, temp files and unreferenced objects
    # older than this; never a committed partition's files.
    gc_min_age_hours: float = 24.0


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    name: str = ""


@dataclasses.dataclass(frozen=True)
class DvcConfig:
    enabled: bool = True
    repo_dir: str = "."
    # Directory inside repo_dir that `data.dvc` tracks (the training snapshot).
    snapshot_dir: str = "data"
    push: bool = True
    # The DVC remote the snapshots are pushed to. null: the repo's default remote (a local
    # directory in .dvc/config). An s3:// URL is reached with the storage's S3 endpoint and
    # credentials (the Airflow connection or AWS_* env vars); never committed.
    remote_url: str | None = None


def _frozen(**values):
    return dataclasses.field(default_factory=lambda: types.MappingProxyType(dict(values)))


@dataclasses.dataclass(frozen=True)
class FixedDriftThresholds:
    """The classic per-statistic thresholds (shown beside the calibrated view; the policy
    uses them only with `policy.flagging: fixed`)."""

    psi: float = 0.1
    ks_pvalue: float = 0.05
    wasserstein: float = 0.1
    jensen_shannon: float = 0.1
    chi_square_pvalue: float = 0.05


@dataclasses.dataclass(frozen=True)
class QualityLimits:
    """Data-quality breaks: any one makes the run alert instead of retraining."""

    max_missing_share_increase: float = 0.05  # current minus reference, per column
    max_out_of_range_share: float = 0.01  # outside validation.ranges
    max_unseen_category_share: float = 0.01  # categories the reference never saw
    max_scale_ratio: float = 10.0  # median |value| vs reference: a unit change
    min_rows_share: float = 0.5  # a day below this share of the reference's median rows/day
    max_quarantined_days: int = 0


@dataclasses.dataclass(frozen=True)
class RetrainPolicyConfig:
    flagging: str = "calibrated"  # calibrated | fixed
    important_features: int = 5  # top features by permutation importance
    persistence_runs: int = 1  # consecutive runs an important feature must drift
    min_realized: Mapping[str, float] = _frozen(roc_auc=0.70)
    min_estimated: Mapping[str, float] = _frozen(roc_auc=0.70)
    min_labelled_rows: int = 500  # realized performance needs this many labelled rows
    cooldown_days: int = 14
    max_retrains: int = 2
    period_days: int = 30


@dataclasses.dataclass(frozen=True)
class MonitoringConfig:
    window_days: int = 7  # scored days compared with the reference
    performance_window_days: int = 28  # scored days whose labels are looked for
    reference_sample_size: int = 50000  # per column; the profile is exact below it
    psi_bins: int = 10
    bootstrap_resamples: int = 1000
    fdr: float = 0.05  # Benjamini-Hochberg across features
    primary_statistic: Mapping[str, str] = _frozen(numeric="ks", categorical="jensen_shannon")
    min_effect: Mapping[str, float] = _frozen(ks=0.05, psi=0.05, wasserstein=0.05, jensen_shannon=0.05)
    fixed_thresholds: FixedDriftThresholds = FixedDriftThresholds()
    quality: QualityLimits = QualityLimits()
    policy: RetrainPolicyConfig = RetrainPolicyConfig()
    random_state: int = 7


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    train_as_of: dt.date | None = None
    score_days: tuple[dt.date, ...] = ()
    # `make demo-drift`: deliveries with this injected scenario on these days, then the
    # drift_monitoring DAG as of drift_as_of.
    drift_scenario: str = "covariate_shift"
    drift_days: tuple[dt.date, ...] = ()
    drift_as_of: dt.date | None = None


@dataclasses.dataclass(frozen=True)
class AlertsConfig:
    """On-call alerts (plugins/pipeline_airflow/alerting.py). Channels are Airflow connections; a
    channel whose connection does not exist is skipped (the alert is still logged and audited)."""

    email_to: tuple[str, ...] = ()
    email_from: str = "pipeline-alerts@localhost"
    smtp_conn_id: str = "smtp_alerts"  # conn_type smtp
    webhook_conn_id: str = "alerts_webhook"  # conn_type http: Slack-compatible JSON is POSTed to it
    # Failures with the same cause within this window produce one alert (then a count).
    dedupe_minutes: float = 360.0
    # Where people open the Airflow UI (links in alerts).
    ui_base_url: str = "http://127.0.0.1:8080"
    # Lateness (Airflow Deadline Alerts): a scheduled batch_scoring run of day D not finished by
    # D 00:00 UTC + this many hours alerts (30 = 06:00 on D+1). null: no deadline.
    scoring_deadline_hours: float | None = 30.0


@dataclasses.dataclass(frozen=True)
class PrivacyConfig:
    """The intake's privacy gate (pipeline/data/privacy.py)."""

    # Undeclared columns are sampled for personal data (e-mail, phone, card, national ids); one in
    # which at least this share of sampled values match a kind fails the delivery.
    check_undeclared: bool = True
    min_share: float = 0.05


@dataclasses.dataclass(frozen=True)
class UiConfig:
    """The artefact app behind the Airflow UI's links (plugins/pipeline_airflow/artefacts_app.py)."""

    # true: also serve rows (raw, labels, snapshots, predictions' Parquet, quarantined files) and
    # model files to authenticated users; false: only reports, Data Docs, verdicts and listings.
    serve_data_files: bool = False


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    dataset: DatasetConfig
    storage: StorageConfig = StorageConfig()
    validation: ValidationConfig = ValidationConfig()
    training: TrainingConfig = TrainingConfig()
    gate: GateConfig = GateConfig()
    cost: CostConfig | None = None
    fairness: FairnessConfig = FairnessConfig()
    registry: RegistryConfig = RegistryConfig()
    scoring: ScoringConfig = ScoringConfig()
    model: ModelConfig = ModelConfig()
    dvc: DvcConfig = DvcConfig()
    monitoring: MonitoringConfig = MonitoringConfig()
    demo: DemoConfig = DemoConfig()
    alerts: AlertsConfig = AlertsConfig()
    resources: ResourcesConfig = ResourcesConfig()
    maintenance: MaintenanceConfig = MaintenanceConfig()
    ui: UiConfig = UiConfig()
    privacy: PrivacyConfig = PrivacyConfig()
    params_path: str = ""

    @property
    def model_name(self) -> str:
        return self.model.name or self.dataset.name

    def as_dict(self) -> dict[str, Any]:
        """JSON-able view, recorded in model manifests."""
        return _jsonable(self)

    def fingerprint(self) -> str:
        """Stable hash of the settings that shape a model (not paths or env)."""
        relevant = {k: v for k, v in self.as_dict().items() if k in ("dataset", "training", "validation", "cost")}
        relevant["dataset"] = {k: v for k, v in relevant["dataset"].items() if k != "source"}
        relevant["validation"] = {k: v for k, v in relevant["validation"].items() if k != "gx_root"}
        blob = json.dumps(relevant, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return value


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        return _convert(non_none[0], value, where)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _build(tp, value, where)
    if origin is tuple:
        if value is None:
            return ()
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(f"{where}: expected {len(args)} items, got {len(value)}")
        return tuple(_convert(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True)))
    if origin in (collections.abc.Mapping, dict) or tp is Mapping:
        if value is None:
            value = {}
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        val_tp = args[1] if len(args) == 2 else Any
        return types.MappingProxyType({str(k): _convert(val_tp, v, f"{where}.{k}") for k, v in value.items()})
    if tp is Any:
        return value
    if tp is dt.date:
        if isinstance(value, dt.datetime):
            return value.date()
        if isinstance(value, dt.date):
            return value
        try:
            return dt.date.fromisoformat(str(value))
        except ValueError as exc:
            raise ConfigError(f"{where}: {value!r} is not a date (YYYY-MM-DD)") from exc
    if tp is str:
        if value is None:
            raise ConfigError(f"{where}: expected text, got nothing (null)")
        if isinstance(value, bool):
            # YAML 1.1 reads unquoted yes/no/on/off/true/false as booleans.
            raise ConfigError(
                f"{where}: got the boolean {value!r}; YAML reads unquoted yes/no/true/false "
                f'as booleans, so quote the value (e.g. "Yes")'
            )
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{where}: expected text, got {type(value).__name__}")
        return str(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        if tp is int and float(value) != int(value):
            raise ConfigError(f"{where}: expected a whole number, got {value!r}")
        return tp(value)
    return value


def _build(cls: type, data: Any, where: str) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(fields)}")
    kwargs = {}
    for name, field in fields.items():
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], f"{where}.{name}")
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where}: required key '{name}' is missing")
    return cls(**kwargs)


def _resolve_path(base: Path, value: str) -> str:
    """Make a local relative path absolute against the params file's directory."""
    if "://" in value or os.path.isabs(value):
        return value
    return str((base / value).resolve())


# A params file is a few KB; a larger one is a mistake or an attack (it is parsed on every DAG parse).
MAX_PARAMS_BYTES = 1 << 20


class _PlainLoader(yaml.SafeLoader):
    """YAML without anchors and aliases: params never need them, and aliases let a few hundred
    bytes expand into gigabytes ("billion laughs") that only fail much later."""

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            mark = event.start_mark
            raise ConfigError(
                f"{self.name}: line {mark.line + 1}: YAML anchors/aliases ('&', '*') are not "
                "allowed in params; write the values out"
            )
        return super().compose_node(parent, index)


def _read_params(params_path: Path) -> dict:
    size = params_path.stat().st_size
    if size > MAX_PARAMS_BYTES:
        raise ConfigError(f"{params_path}: {size} bytes; a params file may have at most {MAX_PARAMS_BYTES}")
    text = params_path.read_bytes()
    try:
        loader = _PlainLoader(text.decode("utf-8"))
        loader.name = str(params_path)
        try:
            raw = loader.get_single_data() or {}
        finally:
            loader.dispose()
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{params_path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{params_path}: not valid YAML: {exc}") from exc
    return raw


def default_params_path() -> Path:
    env = os.environ.get(PARAMS_ENV)
    if env:
        return Path(env)
    return (
        Path.cwd() / DEFAULT_PARAMS
        if (Path.cwd() / DEFAULT_PARAMS).exists()
        else (Path(__file__).resolve().parents[2] / DEFAULT_PARAMS)
    )


def load_config(path: str | os.PathLike | None = None) -> PipelineConfig:
    params_path = Path(path) if path else default_params_path()
    if not params_path.exists():
        raise ConfigError(f"params file not found: {params_path} (set {PARAMS_ENV} to choose one)")
    raw = _read_params(params_path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{params_path}: top level must be a mapping")
    raw = dict(raw)
    raw["params_path"] = str(params_path.resolve())
    config = _build(PipelineConfig, raw, params_path.name)
    return _finalise(config, params_path.resolve().parent)


def _finalise(config: PipelineConfig, base: Path) -> PipelineConfig:
    ds = config.dataset
    # An env override is relative to where the command runs; the params value
    # is relative to the params file.
    env_root = os.environ.get(STORAGE_ENV)
    storage_root = _resolve_path(Path.cwd(), env_root) if env_root else _resolve_path(base, config.storage.root)
    for key, value in (("uri", ds.source.uri), ("root", ds.source.root)):
        if value and ("://" in value or os.path.isabs(value)) and ".." in value.replace("\\", "/").split("/"):
            raise ConfigError(
                f"dataset.source.{key} {value!r} contains '..': write the path it means "
                "(sources are confined to their landing area)"
            )
    source = dataclasses.replace(
        ds.source,
        uri=_resolve_path(base, ds.source.uri),
        root=_resolve_path(base, ds.source.root) if ds.source.root else None,
    )
    if source.root and not (source.uri + "/").startswith(source.root.rstrip("/") + "/"):
        raise ConfigError(f"dataset.source.uri {source.uri!r} is not under dataset.source.root {source.root!r}")
    if source.max_bytes < 1 or source.max_rows < 1:
        raise ConfigError("dataset.source.max_bytes and dataset.source.max_rows must be at least 1")
    config = dataclasses.replace(
        config,
        dataset=dataclasses.replace(ds, source=source),
        storage=dataclasses.replace(config.storage, root=storage_root),
        validation=dataclasses.replace(config.validation, gx_root=_resolve_path(base, config.validation.gx_root)),
        dvc=dataclasses.replace(
            config.dvc,
            repo_dir=_resolve_path(base, config.dvc.repo_dir),
            remote_url=os.environ.get(DVC_REMOTE_ENV) or config.dvc.remote_url,
        ),
    )
    _check(config)
    return config


MOSTLY_CHECKS = ("range", "in_set", "not_null")


def _check_dataset(config: PipelineConfig) -> None:
    ds, v = config.dataset, config.validation
    if ds.id_column is not None:
        if ds.id_column == ds.target.column:
            raise ConfigError(f"dataset.id_column {ds.id_column!r} is also the target column")
        if ds.id_column in ds.pii_columns:
            raise ConfigError(
                f"dataset.id_column {ds.id_column!r} is listed in dataset.pii_columns: the id is "
                "kept in every output (predictions join on it), so it cannot be PII. Use a "
                "pseudonymous id, or set id_column: null to derive a row key"
            )
        if ds.id_column in ds.sensitive_attributes:
            raise ConfigError(f"dataset.id_column {ds.id_column!r} is listed in dataset.sensitive_attributes")
    if ds.target.column in ds.pii_columns or ds.target.column in ds.features.exclude:
        raise ConfigError(f"dataset.target.column {ds.target.column!r} is listed as PII or excluded")
    roles = {ds.id_column, ds.target.column, ds.event_time_column, *ds.pii_columns} - {None}
    for section in ("ranges", "categories", "mostly"):
        clash = sorted(set(getattr(v, section)) & roles)
        if clash:
            raise ConfigError(f"validation.{section} names id/target/event-time/PII column(s) {clash}")
    for col, bounds in v.ranges.items():
        lo, hi = bounds
        if lo is not None and hi is not None and lo > hi:
            raise ConfigError(
                f"validation.ranges.{col}: [{lo:g}, {hi:g}] is not ordered (minimum above maximum); "
                f"did you mean [{hi:g}, {lo:g}]?"
            )
    for col, values in v.categories.items():
        if not values:
            raise ConfigError(f"validation.categories.{col}: empty list (no value could pass)")
    for col, checks in v.mostly.items():
        for check, share in checks.items():
            if check not in MOSTLY_CHECKS:
                raise ConfigError(f"validation.mostly.{col}: unknown check {check!r}; known: {list(MOSTLY_CHECKS)}")
            if not 0.0 < float(share) <= 1.0:
                raise ConfigError(f"validation.mostly.{col}.{check}: {share} is not a share in (0, 1]")
    if ds.batching.label_delay_days < 0:
        raise ConfigError(
            f"dataset.batching.label_delay_days is {ds.batching.label_delay_days}: labels cannot "
            "arrive before their day (a negative delay would train on labels from the future)"
        )
    if ds.batching.days < 1:
        raise ConfigError("dataset.batching.days must be at least 1")
    if not 0.0 <= v.max_null_fraction < 1.0:
        raise ConfigError("validation.max_null_fraction must be in [0, 1)")
    if v.row_policy not in ("fail_batch", "quarantine_rows"):
        raise ConfigError(f"validation.row_policy must be 'fail_batch' or 'quarantine_rows', got {v.row_policy!r}")
    if not 0.0 < config.privacy.min_share <= 1.0:
        raise ConfigError("privacy.min_share must be in (0, 1]")
    if not 0.0 <= v.max_unknown_label_share < 1.0:
        raise ConfigError("validation.max_unknown_label_share must be in [0, 1)")
    if not 0.0 <= v.max_bad_row_share < 1.0:
        raise ConfigError("validation.max_bad_row_share must be in [0, 1)")
    if v.extra_columns not in ("fail", "ignore"):
        raise ConfigError(f"validation.extra_columns must be 'fail' or 'ignore', got {v.extra_columns!r}")
    if config.scoring.rows_per_task < 1 or config.storage.row_group_rows < 1:
        raise ConfigError("scoring.rows_per_task and storage.row_group_rows must be at least 1")
    if config.resources.threads_per_task is not None and config.resources.threads_per_task < 1:
        raise ConfigError("resources.threads_per_task must be at least 1 (or null: derived from the executor)")
    if v.max_rows_factor <= 1.0 or (v.max_rows is not None and v.max_rows < v.min_rows):
        raise ConfigError("validation.max_rows_factor must be > 1 and max_rows >= min_rows")
    s = config.storage
    if s.connect_timeout_seconds <= 0 or s.read_timeout_seconds <= 0 or not 1 <= s.max_attempts <= 10:
        raise ConfigError("storage: timeouts must be > 0 and max_attempts between 1 and 10")
    _check_against_header(config)


def named_columns(config: PipelineConfig) -> dict[str, list[str]]:
    """Every column the params name, by where they name it."""
    ds, v = config.dataset, config.validation
    named = {
        "dataset.id_column": [ds.id_column] if ds.id_column else [],
        "dataset.target.column": [ds.target.column],
        "dataset.event_time_column": [ds.event_time_column] if ds.event_time_column else [],
        "dataset.features.numeric": list(ds.features.numeric),
        "dataset.features.categorical": list(ds.features.categorical),
        "dataset.features.exclude": list(ds.features.exclude),
        "dataset.sensitive_attributes": list(ds.sensitive_attributes),
        "dataset.pii_columns": list(ds.pii_columns),
        "validation.ranges": list(v.ranges),
        "validation.categories": list(v.categories),
        "validation.mostly": list(v.mostly),
        "fairness.bins": list(config.fairness.bins),
    }
    return {k: cols for k, cols in named.items() if cols}


def check_columns_exist(config: PipelineConfig, header: list[str], where: str) -> None:
    """Every column the params name is in `header` (the source's columns); raise naming them."""
    present = set(header)
    problems = []
    for key, cols in named_columns(config).items():
        missing = [c for c in cols if c not in present]
        if missing:
            problems.append(f"{key} names {missing}")
    if problems:
        import difflib

        hints = []
        for cols in named_columns(config).values():
            for c in cols:
                if c not in present:
                    close = difflib.get_close_matches(c, header, n=1)
                    if close:
                        hints.append(f"{c!r} -> {close[0]!r}?")
        raise ConfigError(
            f"params name column(s) that {where} does not have: {'; '.join(problems)}. "
            f"Its columns: {header}" + (f". Did you mean: {', '.join(hints)}" if hints else "")
        )


def read_local_header(uri: str, fmt: str, delimiter: str) -> list[str] | None:
    """The column names of a local single-file source, or None if it cannot be read cheaply."""
    if "://" in uri or "{date" in uri or any(ch in uri for ch in "*?[") or not os.path.isfile(uri):
        return None
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            return list(pq.read_schema(uri).names)
        import csv
        import gzip

        opener = gzip.open if uri.endswith(".gz") else open
        with opener(uri, "rt", encoding="utf-8", newline="") as fh:
            return [c.strip() for c in next(csv.reader(fh, delimiter=delimiter))]
    except Exception:  # an unreadable source is reported, with its row, when a day is read
        return None


def _check_against_header(config: PipelineConfig) -> None:
    src = config.dataset.source
    header = read_local_header(src.uri, src.format, src.csv_delimiter)
    if header is not None:
        check_columns_exist(config, header, f"the source {src.uri}")


def _check(config: PipelineConfig) -> None:
    ds = config.dataset
    _check_dataset(config)
    if ds.source.format not in ("csv", "parquet"):
        raise ConfigError(f"dataset.source.format must be 'csv' or 'parquet', got {ds.source.format!r}")
    if not ds.name.replace("_", "").replace("-", "").isalnum():
        raise ConfigError(f"dataset.name {ds.name!r} must be letters, digits, '-' or '_' (it names storage paths)")
    special = {ds.id_column, ds.target.column, ds.event_time_column} - {None}
    listed = set(ds.features.numeric) | set(ds.features.categorical)
    clash = sorted(listed & (special | set(ds.pii_columns)))
    if clash:
        raise ConfigError(f"dataset.features lists id/target/event-time/PII column(s) {clash}")
    both = sorted(set(ds.features.numeric) & set(ds.features.categorical))
    if both:
        raise ConfigError(f"dataset.features: {both} listed as both numeric and categorical")
    t = config.training
    if t.holdout_days < 1 or t.holdout_days >= t.window_days:
        raise ConfigError("training.holdout_days must be >= 1 and smaller than training.window_days")
    if t.estimator not in ("hist_gradient_boosting", "logistic_regression", "random_forest"):
        raise ConfigError(f"training.estimator {t.estimator!r} is not supported")
    if not 0.0 < config.scoring.threshold < 1.0:
        raise ConfigError("scoring.threshold must be between 0 and 1")
    for metric in [*config.gate.min_metrics, *config.gate.max_metrics]:
        if metric not in METRIC_NAMES:
            raise ConfigError(f"gate.min_metrics: unknown metric {metric!r}; known: {sorted(METRIC_NAMES)}")
    _check_monitoring(config.monitoring)
    g = config.gate
    if g.primary_metric not in METRIC_NAMES - {"brier"}:
        raise ConfigError(f"gate.primary_metric must be one of {sorted(METRIC_NAMES - {'brier'})}")
    if g.bootstrap_resamples < 100 or not 0.5 < g.confidence < 1:
        raise ConfigError("gate.bootstrap_resamples must be >= 100 and gate.confidence in (0.5, 1)")
    if config.cost and (
        config.cost.false_positive < 0
        or config.cost.false_negative < 0
        or config.cost.false_positive + config.cost.false_negative == 0
    ):
        raise ConfigError("cost.false_positive and cost.false_negative must be >= 0, not both 0")
    if not 0.0 <= config.scoring.canary_share <= 1.0:
        raise ConfigError("scoring.canary_share must be between 0 and 1")
    if config.registry.promote_to not in ("champion", "challenger"):
        raise ConfigError("registry.promote_to must be 'champion' or 'challenger'")
    unknown = sorted(set(config.fairness.bins) - set(ds.sensitive_attributes))
    if unknown:
        raise ConfigError(f"fairness.bins names {unknown}, not in dataset.sensitive_attributes")
    for col, edges in config.fairness.bins.items():
        if list(edges) != sorted(set(edges)):
            raise ConfigError(f"fairness.bins.{col}: edges must be increasing, got {list(edges)}")


# Statistics the drift monitor computes, by column kind.
NUMERIC_STATISTICS = ("psi", "ks", "wasserstein")
CATEGORICAL_STATISTICS = ("jensen_shannon", "chi_square")
MONITORED_METRICS = frozenset({"roc_auc", "pr_auc", "precision", "recall"})


def _check_monitoring(m: MonitoringConfig) -> None:
    if m.window_days < 1 or m.performance_window_days < 1:
        raise ConfigError("monitoring.window_days and monitoring.performance_window_days must be >= 1")
    if m.bootstrap_resamples < 100:
        raise ConfigError("monitoring.bootstrap_resamples must be >= 100 (p-values need resolution)")
    if not 0 < m.fdr < 1:
        raise ConfigError("monitoring.fdr must be between 0 and 1")
    for kind, allowed in (("numeric", NUMERIC_STATISTICS), ("categorical", CATEGORICAL_STATISTICS)):
        stat = m.primary_statistic.get(kind)
        if stat not in allowed:
            raise ConfigError(f"monitoring.primary_statistic.{kind} must be one of {list(allowed)}, got {stat!r}")
    for stat in m.min_effect:
        if stat not in NUMERIC_STATISTICS + CATEGORICAL_STATISTICS:
            raise ConfigError(f"monitoring.min_effect: unknown statistic {stat!r}")
    p = m.policy
    if p.flagging not in ("calibrated", "fixed"):
        raise ConfigError(f"monitoring.policy.flagging must be 'calibrated' or 'fixed', got {p.flagging!r}")
    if p.persistence_runs < 1 or p.important_features < 1:
        raise ConfigError("monitoring.policy.persistence_runs and important_features must be >= 1")
    for metric in [*p.min_realized, *p.min_estimated]:
        if metric not in MONITORED_METRICS:
            raise ConfigError(f"monitoring.policy: unknown metric {metric!r}; known: {sorted(MONITORED_METRICS)}")


# Metrics the evaluation step computes; gate floors may name any of them.
METRIC_NAMES = frozenset({"roc_auc", "pr_auc", "f1", "precision", "recall", "brier", "accuracy"})
