"""The project's Airflow plugin: extra links from task instances to what they produced."""
from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from pipeline_airflow.links import LINKS


class PipelinePlugin(AirflowPlugin):
    name = "batch_ml_pipeline"
    global_operator_extra_links = LINKS
