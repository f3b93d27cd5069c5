"""Batch ML pipeline logic. Never imports Airflow: the DAGs in dags/ call into this package."""
