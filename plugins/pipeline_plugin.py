"""The project's Airflow plugin: extra links from task instances to what they produced, and the
small app on the API server that serves local artefacts behind those links."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from pipeline_airflow.artefacts_app import PREFIX, app
from pipeline_airflow.links import LINKS


class PipelinePlugin(AirflowPlugin):
    name = "batch_ml_pipeline"
    global_operator_extra_links = LINKS
    fastapi_apps = [{"app": app, "url_prefix": PREFIX, "name": "Pipeline artefacts"}]
