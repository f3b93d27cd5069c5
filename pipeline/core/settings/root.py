"""The whole params file as one frozen object."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic_core import to_jsonable_python

from .data import DatasetConfig, PrivacyConfig, ValidationConfig
from .model import CostConfig, FairnessConfig, GateConfig, ModelConfig, RegistryConfig, ScoringConfig, TrainingConfig
from .monitoring import MonitoringConfig
from .ops import AlertsConfig, DemoConfig, DvcConfig, MaintenanceConfig, ResourcesConfig, StorageConfig, UiConfig
from .types import Section


class PipelineConfig(Section):
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
        return self.model_dump(mode="json")

    def fingerprint(self) -> str:
        """Stable hash of the settings that shape a model (not paths or env)."""
        relevant = {k: v for k, v in self.as_dict().items() if k in ("dataset", "training", "validation", "cost")}
        relevant["dataset"] = {k: v for k, v in relevant["dataset"].items() if k != "source"}
        relevant["validation"] = {k: v for k, v in relevant["validation"].items() if k != "gx_root"}
        return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()


def jsonable(value: Any) -> Any:
    """Settings (or parts of them) as plain JSON values."""
    return to_jsonable_python(value, fallback=dict)
