"""The serving bundle in the BentoML model store: saving it, finding it, loading it.

The bundle's files are the core's (``serving/bundle.py``); which folder holds them is BentoML's
business, so that part is wiring, shared by the ``serving_bundle`` asset and ``forecast-platform
serve``. Every call takes the store explicitly (``Settings.bentoml_home``) instead of BentoML's
process-wide one: a Dagster run serves many data directories over its life, and BentoML's global
store is fixed at its first use. BentoML is imported only when a call needs it, so loading the
Dagster definitions does not pay for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from forecast_platform.datasets.spec import DatasetSpec
from forecast_platform.serving.bundle import (
    Bundle,
    PackedBundle,
    load_bundle,
    pack_bundle,
    read_manifest,
)
from forecast_platform.settings import Settings

if TYPE_CHECKING:
    from bentoml._internal.models import ModelStore


def model_store(bentoml_home: Path) -> ModelStore:
    """The model store under ``bentoml_home``, independent of the process's BENTOML_HOME."""
    from bentoml._internal.models import ModelStore

    path = Path(bentoml_home) / "models"
    path.mkdir(parents=True, exist_ok=True)
    return ModelStore(str(path))


def save_bundle(con: duckdb.DuckDBPyConnection, spec: DatasetSpec, model_name: str,
                settings: Settings, extra_metadata: dict[str, Any] | None = None) -> str:
    """Pack the champion of ``model_name`` as a new version of the ``settings.bundle_name``
    model in ``settings.bentoml_home``; return its tag.

    The service reads the same setting for the name, so the two cannot disagree on it.
    """
    return write_bundle(pack_bundle(con, spec, model_name, extra_metadata,
                                    scratch=settings.staging_dir), settings)


def write_bundle(packed: PackedBundle, settings: Settings) -> str:
    """Store a packed bundle as a new version of ``settings.bundle_name``; return its tag.
    Apart from packing so the warehouse can be closed while the files are written. The packed
    files' scratch folder is removed whether or not the store takes them."""
    import bentoml

    try:
        with bentoml.models.create(settings.bundle_name, labels=packed.labels,
                                   metadata=packed.metadata,
                                   _model_store=model_store(settings.bentoml_home)) as ref:
            packed.write(Path(ref.path))
            tag = str(ref.tag)
    finally:
        packed.discard()
    return tag


def stored_bundle(tag: str, bentoml_home: Path) -> tuple[str, Path]:
    """The full tag (``name:latest`` resolved) and folder of a bundle in the store.

    Raises ``bentoml.exceptions.NotFound`` when the store has no such bundle.
    """
    import bentoml

    ref = bentoml.models.get(tag, _model_store=model_store(bentoml_home))
    return str(ref.tag), Path(ref.path)


def load_manifest(tag: str, bentoml_home: Path) -> tuple[dict[str, Any], Path]:
    """A stored bundle's manifest and folder, without loading the model or the snapshot."""
    _, root = stored_bundle(tag, bentoml_home)
    return read_manifest(root), root


def load_stored_bundle(tag: str, bentoml_home: Path) -> Bundle:
    """A bundle loaded from the store by its tag (``name:version`` or ``name:latest``)."""
    full_tag, root = stored_bundle(tag, bentoml_home)
    return load_bundle(root, tag=full_tag)
