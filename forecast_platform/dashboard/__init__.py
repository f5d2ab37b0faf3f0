"""The planner's dashboard: a Streamlit app over published Parquet snapshots.

DuckDB admits one writing process per file and fails any other process that opens it while a
run writes, so the app never opens the warehouse. The ``dashboard_snapshot`` asset copies what
the app shows into a snapshot folder (``extract.py`` selects it, ``snapshot.py`` publishes it
atomically and reads it back); the pages (``views/``, one module per page; not ``pages/``,
which Streamlit would also list as pages of its own) read only that. No Dagster here.
"""
