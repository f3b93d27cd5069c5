"""One params file, loaded into one frozen, typed config object (pydantic, closed sections).

DVC stages, the CLI and the Airflow tasks all call :func:`load_config`: parsing only, no data is read
(the stages check what they own in `steps.settings`; the columns the params name are checked against
the data when it is first read). `python -m pipeline params-schema` prints the JSON schema."""

from pipeline.core.errors import ConfigError
from pipeline.core.settings.data import DEFAULT_NA_VALUES, BatchingConfig, DatasetConfig, SourceConfig, ValidationConfig
from pipeline.core.settings.load import DVC_REMOTE_ENV, MAX_PARAMS_BYTES, PARAMS_ENV, STORAGE_ENV, load_config, schema
from pipeline.core.settings.model import CostConfig, FairnessConfig, GateConfig, TrainingConfig
from pipeline.core.settings.monitoring import MonitoringConfig, QualityLimits, RetrainPolicyConfig
from pipeline.core.settings.root import PipelineConfig, jsonable
