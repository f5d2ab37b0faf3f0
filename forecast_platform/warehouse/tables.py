"""Every warehouse table's and asset's name, said once: assets, core modules, the CLI and the
service read them from here, so a core module never imports Dagster wiring to learn a name.

Each table is the asset of the same name (``dagster/table_name`` ``warehouse.main.<name>``),
except the registry, which the forecaster asset writes as versioned rows, and the file
quarantine, which the raw_sales asset writes beside its rows.
"""

RAW = "raw_sales"  # landed rows as they came, every value as text (raw_sales)
# landing files that gave no rows (unreadable, or empty), one row each with the reason; written
# by the raw_sales asset
FILE_REJECTS = "file_rejects"
VALIDATED = "validated_sales"  # typed rows that passed validation: what features read
REJECTS = "sales_rejects"  # quarantined rows with their original values and the reason
CALENDAR = "holiday_calendar"  # one row per day: holiday flag, name, days to the next
FEATURES = "sales_features"  # model features per series and date
REGISTRY = "model_registry"  # one row per forecaster version: recipe, metrics, gate, model
# per forecaster version, its rolling-origin backtest point by point (model and baselines, long
# form): what the dashboard measures accuracy by horizon and key, coverage and safety stock on
BACKTEST = "backtest_predictions"
FORECASTS = "forecasts"  # the champion's P10/P50/P90 over the horizon after the last origin
EXPLANATIONS = "forecast_explanations"  # the top feature contributions of each forecast
EXPECTED = "expected_sales"  # out-of-sample expected values for every historical period
ANOMALIES = "sales_anomalies"  # every scored period with its score, flag, type and reason
DRIFT_SUMMARY = "drift_summary"  # one row per drift report
DRIFT_COLUMNS = "drift_columns"  # per report, each column's drift test
PERFORMANCE = "forecast_performance"  # per day and model version, the forecast in force's error
ALERTS = "alerts"  # failed runs, failed blocking checks, drift and degradation
PREDICTION_LOG = "prediction_log"  # the service's requests and answers
# Planned known covariates (promotions, prices) of future dates, one row per date and series,
# the newest plan file's row for each date; and the plan rows refused, with their reasons.
COVARIATE_PLAN = "covariate_plan"
PLAN_REJECTS = "plan_rejects"
PLAN_LIFT = "plan_lift"  # per series and future date, the forecast with the plan and without

# Assets that are not tables: a model row, a packed bundle, a report on disk.
FORECASTER = "forecaster"  # rows of REGISTRY (the forecaster's versions), tracked in MLflow
ANOMALY_MODEL = "anomaly_model"  # rows of REGISTRY (the detector's versions)
SERVING_BUNDLE = "serving_bundle"  # the champion packed into the BentoML model store
DRIFT_REPORT = "drift_report"  # Evidently HTML/JSON per day, rows in DRIFT_SUMMARY/COLUMNS
# Parquet files under <data dir>/dashboard that the planner's app reads (never the warehouse)
DASHBOARD_SNAPSHOT = "dashboard_snapshot"

# In the order the CLI's summary lists them (the asset graph's order).
ALL = (RAW, FILE_REJECTS, VALIDATED, REJECTS, CALENDAR, FEATURES, COVARIATE_PLAN, PLAN_REJECTS,
       REGISTRY, BACKTEST, FORECASTS, EXPLANATIONS, PLAN_LIFT, EXPECTED, ANOMALIES, DRIFT_SUMMARY,
       DRIFT_COLUMNS, PERFORMANCE, ALERTS)
