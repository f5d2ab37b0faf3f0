"""What a command prints at its end: tables, checks, the forecaster, anomalies and drift."""

from __future__ import annotations

from forecast_platform.defs.metadata import run_metadata
from forecast_platform.settings import Settings
from forecast_platform.warehouse import tables

SUMMARY_TABLES = list(tables.ALL)


def forecaster_summary(result) -> list[str]:
    """The backtest table (model vs baselines), the gate's verdict and the report's path."""
    meta = run_metadata(result, tables.FORECASTER)
    if meta is None:
        return []
    return [
        "", f"Forecaster v{meta['forecaster_version']} ({meta['status']}), trained on "
        f"{meta['train_window']} in {meta['train_seconds']} s; MLflow run "
        f"{meta['mlflow_run_id']}",
        "Backtest (rolling origins, same points for every method):",
        *("  " + line for line in str(meta["backtest"]).splitlines()),
        f"Report:       {meta['report']}",
    ]


def anomaly_summary(result) -> list[str]:
    """Anomalies found, by type, and how they compare with the generator's labels."""
    meta = run_metadata(result, tables.ANOMALIES)
    if meta is None:
        return []
    lines = ["", f"Anomalies: {meta['flagged']} of {meta['dagster/row_count']} series-periods "
                 f"flagged, by type {meta['by_type']}"]
    if "vs_labels_precision" in meta:
        lines.append(
            f"  against the generator's labels: precision {meta['vs_labels_precision']}, "
            f"recall {meta['vs_labels_recall']}, F1 {meta['vs_labels_f1']}, event recall "
            f"{meta['vs_labels_event_recall']}")
    return lines


def drift_summary(result) -> list[str]:
    """The drift report's verdict for the last day, and where the HTML is."""
    meta = run_metadata(result, tables.DRIFT_REPORT)
    if meta is None:
        return []
    return ["", f"Drift report ({meta['window']}, vs champion v{meta['forecaster_version']}): "
                f"{meta['drifted_count']}/{meta['n_columns']} columns drifted; retrain: "
                f"{meta['retrain']} ({meta['retrain_reason']})",
            f"Drift HTML:   {meta['report']}",
            "              forecast-platform simulate-drift   lands drifted days and "
            "shows the retrain loop"]


def summarize(settings: Settings, results: list, seconds: float) -> str:
    import duckdb

    from forecast_platform.warehouse.store import table_exists

    ok = all(r.success for r in results)
    runs = ", ".join(r.run_id[:8] for r in results)
    lines = [f"\nforecast_platform: {'succeeded' if ok else 'FAILED'} in {seconds:.0f} s "
             f"(runs {runs})", "", "Tables (DuckDB):"]
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        for table in SUMMARY_TABLES:
            n = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0] \
                if table_exists(con, table) else "none yet"
            lines.append(f"  {table:<18} {n:>12}")
    events = [e for r in results for e in r.all_events]
    checks = [e.event_specific_data for e in events
              if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    failed = [c for c in checks if not c.passed]
    lines += ["", f"Asset checks: {len(checks) - len(failed)} passed, {len(failed)} failed"]
    for c in failed:  # every check states its verdict as its description
        lines.append(f"  [{c.severity.value}] {c.asset_key.to_user_string()}.{c.check_name}: "
                     f"{c.description or ''}")
    for e in events:
        if e.event_type_value == "STEP_FAILURE":
            error = e.event_specific_data.error
            if "DagsterAssetCheckFailedError" in (error.cls_name or "") + error.message:
                lines.append(f"  step {e.step_key} stopped: its blocking check failed (above); "
                             "the steps after it did not run")
            else:
                lines.append(f"  step {e.step_key} failed: "
                             f"{error.message.strip().splitlines()[0]} (the whole error: "
                             f"forecast-platform ui, run {e.run_id[:8]})")
    if any(c.check_name == "champion_gate" and getattr(c.metadata.get("champion"), "value",
                                                         None) == "none" for c in failed):
        lines += ["", "No champion yet, so no forecasts, anomaly scores or serving bundle: the "
                      "gate promotes a model only when it beats every baseline and the champion "
                      "on the metric of record. The backtest below shows where it lost; with "
                      "more history or series, `forecast-platform demo` (or the train_job) "
                      "trains again."]
    for result in results:
        lines += forecaster_summary(result)
        lines += anomaly_summary(result)
        lines += drift_summary(result)
    lines += [
        "",
        f"Warehouse:    {settings.warehouse_path}",
        "              forecast-platform query \"SELECT ...\"   reads it and lets go at once "
        "(a reader that stays open would hold writers back)",
        f"Landing:      {settings.landing_dir()}",
        f"Dagster home: {settings.dagster_home}",
        f"BentoML home: {settings.bentoml_home}",
        "UI:           forecast-platform ui   then open http://127.0.0.1:3000",
        "Serving:      forecast-platform serve   then POST http://127.0.0.1:3001/forecast",
        "Dashboard:    forecast-platform dashboard   then open http://127.0.0.1:8501 (what-if "
        "pages call the service: forecast-platform serve)",
    ]
    return "\n".join(lines)
