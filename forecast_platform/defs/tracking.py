"""MLflow through dagster-mlflow: one MLflow run per Dagster run, tagged with its run id.

dagster-mlflow's resource calls ``mlflow.set_experiment`` with MLflow's default artifact
location (``./mlruns`` under whatever the working directory is). We create the experiment
first with its artifacts under the data directory, so two data directories never share files.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import mlflow
from dagster_mlflow import end_mlflow_on_run_finished
from dagster_mlflow.resources import MlFlow

from forecast_platform.defs.resources import PlatformResource

__all__ = ["end_mlflow_on_run_finished", "experiment_name", "mlflow_resource"]


def experiment_name(dataset: str) -> str:
    return f"forecast_platform/{dataset}"


def ensure_experiment(tracking_uri: str, name: str, artifact_root: Path) -> str:
    mlflow.set_tracking_uri(tracking_uri)
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    artifact_root.mkdir(parents=True, exist_ok=True)
    return mlflow.create_experiment(name, artifact_location=artifact_root.as_uri())


@dg.resource(required_resource_keys={"platform"},
             description="dagster-mlflow's MLflow run, with the experiment under the data dir.")
def mlflow_resource(context) -> MlFlow:
    platform: PlatformResource = context.resources.platform
    settings = platform.settings
    name = experiment_name(settings.dataset)
    ensure_experiment(settings.mlflow_tracking_uri, name, settings.data_dir / "mlartifacts")
    # An MLflow run left active by an earlier Dagster run in this process (one materialized
    # without train_job's end hook, e.g. a selection run in the same Python process) would
    # otherwise receive this run's params and fail on "changing param values".
    active = mlflow.active_run()
    if active is not None and active.data.tags.get("dagster_run_id") != context.run_id:
        mlflow.end_run()
    # MlFlow reads only these four attributes of its init context.
    return MlFlow(SimpleNamespace(
        resource_config={"experiment_name": name,
                         "mlflow_tracking_uri": settings.mlflow_tracking_uri,
                         "extra_tags": {"dataset": settings.dataset}},
        log=context.log, dagster_run=context.dagster_run, run_id=context.run_id,
    ))
