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

__all__ = ["end_mlflow_on_run_finished", "experiment_name", "mlflow_resource",
           "register_model_version"]


def experiment_name(dataset: str) -> str:
    return f"forecast_platform/{dataset}"


def register_model_version(name: str, info: mlflow.models.model.ModelInfo, run_id: str) -> str:
    """A new version of the registered model ``name`` for a logged model; its version number.

    What ``log_model(registered_model_name=...)`` does, through the client: the fluent path
    prints "Successfully registered model" and "Created version" on stderr in every run.
    """
    client = mlflow.MlflowClient()
    if not client.search_registered_models(filter_string=f"name = '{name}'"):
        client.create_registered_model(name)
    version = client.create_model_version(name, source=info.model_uri, run_id=run_id,
                                          model_id=info.model_id)
    return str(version.version)


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
    # An MLflow run left active by an earlier Dagster run in this process (one materialized
    # without train_job's end hook, e.g. a selection run, or a run that failed after its MLflow
    # run started) would otherwise receive this run's params and fail on "changing param
    # values". It is ended first, while the tracking URI is still its store's: after the
    # switch to this run's store it could not be found there.
    active = mlflow.active_run()
    if active is not None and active.data.tags.get("dagster_run_id") != context.run_id:
        mlflow.end_run()
    ensure_experiment(settings.mlflow_tracking_uri, name, settings.data_dir / "mlartifacts")
    # MlFlow reads only these four attributes of its init context.
    return MlFlow(SimpleNamespace(
        resource_config={"experiment_name": name,
                         "mlflow_tracking_uri": settings.mlflow_tracking_uri,
                         "extra_tags": {"dataset": settings.dataset}},
        log=context.log, dagster_run=context.dagster_run, run_id=context.run_id,
    ))
