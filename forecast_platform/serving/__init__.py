"""Serving: the bundle the BentoML service loads, and the online feature and prediction core.

Nothing here imports Dagster; ``bundle`` talks to the BentoML model store, ``online`` only to
an in-memory DuckDB, so both are unit-tested directly and shared by the asset and the service.
"""
