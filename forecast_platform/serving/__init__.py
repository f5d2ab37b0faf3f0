"""Serving: the bundle the BentoML service loads, and the online feature and prediction core.

Nothing here imports Dagster or BentoML: ``bundle`` reads and writes the bundle's folder (which
folder, a model in BentoML's store, is the wiring's business), ``snapshot`` and ``online`` talk
only to an in-memory DuckDB, and ``requests`` checks what a request asks for. So all of it is
unit-tested directly and shared by the asset and the service.
"""
