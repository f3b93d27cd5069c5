# The image every Airflow component of docker-compose.yaml runs: Airflow + the pinned
# dependencies + the `pipeline` package. DAGs and plugins are mounted, not baked in.
FROM apache/airflow:3.3.2-python3.11

USER root
RUN apt-get update && apt-get install -y --no-install-recommends git && rm -rf /var/lib/apt/lists/*
USER airflow

COPY --chown=airflow:root requirements.txt /opt/pipeline/requirements.txt
RUN pip install --no-cache-dir uv \
 && uv pip install --no-cache --compile-bytecode --python "$(command -v python)" -r /opt/pipeline/requirements.txt

COPY --chown=airflow:root pyproject.toml params.yaml /opt/pipeline/
COPY --chown=airflow:root pipeline /opt/pipeline/pipeline
RUN uv pip install --no-cache --compile-bytecode --python "$(command -v python)" --no-deps /opt/pipeline

# Images carry no .git: the build passes the commit so model manifests record it.
ARG CODE_REVISION=unknown
ENV PIPELINE_CODE_REVISION=${CODE_REVISION}
