"""holiday_calendar and sales_features: model inputs computed by one set-based SQL pass."""



import dagster as dg

from forecast_platform.datasets.spec import DatasetSpec
from forecast_platform.defs.metadata import (
    OWNERS_FORECASTING,
    TYPE_NAMES,
    partition_metadata,
    qualified_name,
)
from forecast_platform.defs.partitions import date_range, partitions_for
from forecast_platform.defs.resources import PlatformResource
from forecast_platform.features.offline import (
    CALENDAR,
    FEATURES,
    compute_features,
    write_calendar,
)
from forecast_platform.features.sql import KNOWN_IN_ADVANCE, FeaturePlan, plan_features
from forecast_platform.forecasting.forecaster import ForecasterParams
from forecast_platform.ingestion.validation import SQL_TYPES
from forecast_platform.warehouse.store import quote
from forecast_platform.warehouse.tables import VALIDATED


def feature_schema(plan: FeaturePlan) -> dg.TableSchema:
    def horizon(h: int) -> str:
        return "any horizon" if h >= KNOWN_IN_ADVANCE else f"horizons <= {h}"

    return dg.TableSchema(columns=[
        dg.TableColumn("ds", "date", description="target date"),
        dg.TableColumn("series_id", "string", description="series keys joined by '|'"),
        *[dg.TableColumn(k, TYPE_NAMES.get(t, t.lower()), description="series key")
          for k, t in ((k, SQL_TYPES[plan.spec.key_type(k)]) for k in plan.spec.keys)],
        dg.TableColumn("y", "float64", description="target (null for future dates)"),
        *[dg.TableColumn(f.name, "float64", description=f"{f.description}; safe for "
                         f"{horizon(f.safe_horizon)}") for f in plan.features],
    ])


def build_feature_assets(spec: DatasetSpec) -> list:
    partitions = partitions_for(spec)
    plan = plan_features(spec)

    @dg.asset(
        name=CALENDAR,
        group_name="features",
        kinds={"duckdb", "pandas"},
        owners=OWNERS_FORECASTING,
        description="One row per day with holiday flag, name and days to the next holiday, "
                    "running a year past the data so forecasts see future holidays.",
        pool="duckdb",
    )
    def holiday_calendar(context: dg.AssetExecutionContext, platform: PlatformResource
                         ) -> dg.MaterializeResult:
        with platform.connect(log=context.log.warning) as con:
            frame = write_calendar(con, spec.start, spec.end)
        return dg.MaterializeResult(metadata={
            "dagster/row_count": len(frame),
            "holidays": int(frame["is_holiday"].sum()),
            "range": f"{frame['ds'].min()} .. {frame['ds'].max()}",
        })

    @dg.asset(
        name=FEATURES,
        deps=[VALIDATED, CALENDAR],
        group_name="features",
        kinds={"duckdb", "sql"},
        owners=OWNERS_FORECASTING,
        description=(
            f"Model features per series and date for a {plan.horizon}-period horizon: calendar, "
            "known covariates, lags, rolling means and spreads, same-weekday profiles, "
            "year-over-year growth. No feature reads data after the forecast origin; each "
            "column's description says the horizons it is safe for."
        ),
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool="duckdb",
        # The column schema and table name are static: declared once here rather than in every
        # partition's materialization, where a single-run backfill would store (and Dagster
        # serialize) them once per partition -- ~2.5 ms a partition for these ~40 columns.
        metadata={"horizon": plan.horizon, "lookback_days": plan.lookback_days,
                  "dagster/column_schema": feature_schema(plan),
                  "dagster/table_name": qualified_name(FEATURES)},
    )
    def sales_features(context: dg.AssetExecutionContext, platform: PlatformResource):
        start, end = date_range(context)
        with platform.connect(log=context.log.warning) as con:
            rows = compute_features(con, plan, start, end)
            metadata = partition_metadata(context, con, FEATURES, "ds", start, end, rows,
                                          spec.step_days)
            # Rows the forecaster can learn from: those with a usable level (its scale feature).
            level = quote(ForecasterParams.scale_feature)
            usable = con.execute(
                f"SELECT avg(CASE WHEN {level} > 0 THEN 1 ELSE 0 END) FROM {FEATURES} "
                "WHERE ds BETWEEN ? AND ?", [start, end]).fetchone()[0]
        return dg.MaterializeResult(metadata={
            **metadata, "features": len(plan.features),
            "share_usable_for_training": round(float(usable or 0.0), 4),
        })

    return [holiday_calendar, sales_features]
