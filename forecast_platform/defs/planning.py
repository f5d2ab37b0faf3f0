"""The planning group: plan files -> covariate_plan (+ plan_rejects); plan_lift after forecasts.

covariate_plan is partitioned by the planned date, like sales by the sales date: a partition
holds the plan of one future date, from the newest plan file that plans it. Its checks make the
quarantine visible and show that nothing was lost (rows read = planned + rejected); they warn
rather than block, because the refused rows are already kept away from the forecasts. Landing a
plan re-materializes the forecasts through the plan sensor (defs/automation.py).
"""


import dagster as dg

from forecast_platform.datasets.spec import DatasetSpec
from forecast_platform.defs.metadata import (
    OWNERS_FORECASTING,
    TABLE_NAME,
    check_result,
    preview,
    qualified_name,
)
from forecast_platform.defs.partitions import date_range, plan_partitions_for
from forecast_platform.defs.resources import PlatformResource
from forecast_platform.features.sql import known_passthrough, plan_features
from forecast_platform.forecasting.forecast import champion_at_origin, future_query
from forecast_platform.ingestion.checks import Outcome
from forecast_platform.planning.files import (
    owners,
    partitions_of,
    plan_files,
    plan_range,
    read_plan,
)
from forecast_platform.planning.lift import plan_lift, switched_off
from forecast_platform.planning.store import (
    known_series,
    last_sales_date,
    plan_rows,
    write_plan,
)
from forecast_platform.planning.validation import combine, validate_plan
from forecast_platform.warehouse.store import registered, replace_range, table_exists
from forecast_platform.warehouse.tables import (
    COVARIATE_PLAN,
    FORECASTS,
    PLAN_LIFT,
    PLAN_REJECTS,
    VALIDATED,
)

EXAMPLES = 5


class PlanLiftConfig(dg.Config):
    """Which planned covariates the comparison switches off; empty: every known covariate."""

    switch_off: list[str] = []


def build_planning_assets(spec: DatasetSpec) -> list:
    window = plan_range(spec)
    features = plan_features(spec)

    @dg.asset(
        name=COVARIATE_PLAN,
        group_name="planning",
        kinds={"duckdb", "csv"},
        owners=OWNERS_FORECASTING,
        partitions_def=plan_partitions_for(spec),
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool="duckdb",
        deps=[VALIDATED],
        metadata={TABLE_NAME: qualified_name(COVARIATE_PLAN)},
        description=(
            "Known covariates planned for future dates (promotions, prices), one row per date "
            "and series, from the newest plan file landed by `forecast-platform plan` for each "
            f"date. Rows refused (past dates, unknown series, wrong types, duplicates) are in "
            f"{PLAN_REJECTS} with the reason. The forecasts and the service read the plan; a "
            "date and series without a plan row is 'nothing planned'."
        ),
        check_specs=[
            dg.AssetCheckSpec("plan_rows_balance", asset=COVARIATE_PLAN,
                              description="Every plan row read is planned or quarantined."),
            dg.AssetCheckSpec("plan_rows_valid", asset=COVARIATE_PLAN,
                              description=f"No plan row was refused ({PLAN_REJECTS} has each "
                                          "refused row with its reason)."),
        ],
    )
    def covariate_plan(context: dg.AssetExecutionContext, platform: PlatformResource):
        first, last = date_range(context)
        owned = owners(plan_files(platform.settings.plans_dir(spec.name)), first, last)
        by_file: dict = {}
        for day, plan in owned.items():
            by_file.setdefault(plan, []).append(day)
        with platform.connect(log=context.log.warning) as con:
            series = known_series(con)
            newest = last_sales_date(con, spec)
            splits = []
            for plan, days in by_file.items():
                frame = read_plan(plan.path, spec)
                parts = partitions_of(frame, spec, window)
                mine = parts.isin(days).to_numpy()
                splits.append(validate_plan(frame[mine], parts[mine], spec, plan.version,
                                            plan.path.name, series, newest, window))
            split = combine(splits, spec)
            planned, rejected = write_plan(con, spec, first, last, split)
            stored = con.execute(
                f"SELECT (SELECT count(*) FROM {COVARIATE_PLAN} WHERE ds BETWEEN ? AND ?), "
                f"(SELECT count(*) FROM {PLAN_REJECTS} WHERE partition_date BETWEEN ? AND ?)",
                [first, last, first, last]).fetchall()[0]
        read = split.landed
        balance = Outcome(
            passed=stored[0] + stored[1] == read,
            summary=f"{read} plan rows read = {stored[0]} planned + {stored[1]} quarantined"
            if stored[0] + stored[1] == read else
            f"{read} plan rows read but {stored[0]} planned + {stored[1]} quarantined are "
            "stored: materialize these partitions again",
            figures={"rows_read": read, "planned": int(stored[0]),
                     "quarantined": int(stored[1])})
        by_reason = split.rejected.groupby("rule").size().to_dict() if rejected else {}
        valid_outcome = Outcome(
            passed=rejected == 0,
            summary="every plan row is valid" if not rejected else
            f"{rejected} of {read} plan rows quarantined in {PLAN_REJECTS}: "
            + ", ".join(f"{n} {rule}" for rule, n in sorted(by_reason.items())),
            figures={"quarantined": rejected, **{f"quarantined_{k}": int(v)
                                                 for k, v in by_reason.items()}},
            examples=split.rejected[["source_line", "reason"]].head(EXAMPLES)
            if rejected else None)
        versions = sorted({p.version for p in by_file})
        yield dg.MaterializeResult(metadata={
            "dagster/row_count": planned,
            "rows_read": read, "planned": planned, "quarantined": rejected,
            "plan_versions": ", ".join(versions) or "none",
            "dates_planned": len(owned),
            "preview": preview(split.valid.drop(columns=["source_line"]).head(5)),
        })
        yield check_result(COVARIATE_PLAN, "plan_rows_balance", balance)
        yield check_result(COVARIATE_PLAN, "plan_rows_valid", valid_outcome,
                           dg.AssetCheckSeverity.WARN)

    @dg.asset(
        name=PLAN_LIFT,
        deps=[FORECASTS, COVARIATE_PLAN],
        group_name="planning",
        kinds={"xgboost", "duckdb"},
        owners=OWNERS_FORECASTING,
        pool="duckdb",
        metadata={TABLE_NAME: qualified_name(PLAN_LIFT)},
        description=(
            "What the plan adds: for every planned date and series, the champion's P50 with the "
            "plan and with its covariates switched off ('nothing planned'), and the lift. "
            "`forecast-platform what-if` prints it for a store or an item."
        ),
    )
    def plan_lift_asset(context: dg.AssetExecutionContext, config: PlanLiftConfig,
                        platform: PlatformResource):
        columns = list(config.switch_off) or list(spec.known)
        stray = [c for c in columns if c not in spec.known]
        if stray:
            raise ValueError(f"switch_off: {stray} are not known covariates of dataset "
                             f"{spec.name!r}; expected some of {list(spec.known)}")
        with platform.connect(log=context.log.warning) as con:
            champion = champion_at_origin(con, spec)
            champion_row, origin, model = champion.row, champion.origin, champion.model
            query = future_query(spec, features, origin, planned=True)
            plan = plan_rows(con, query.first, query.last)
            if plan.empty:
                # Nothing planned over this horizon: no lift to show, and none of an older
                # origin's (what-if reads the forecasts' origin).
                if table_exists(con, PLAN_LIFT):
                    replace_range(con, PLAN_LIFT, "origin", origin, origin,
                                  f"SELECT * FROM {PLAN_LIFT} WHERE false")
                return dg.MaterializeResult(metadata={
                    "dagster/row_count": 0, "origin": str(origin),
                    "series_planned": 0, "forecaster_version": champion_row.version})
            # Only the planned series (filtered in DuckDB: at 50,000 series the horizon is
            # 4.5 M rows): the others' lift is 0 by definition.
            only_planned = (f"SELECT * FROM ({{}}) WHERE series_id IN (SELECT series_id FROM "
                            f"{COVARIATE_PLAN} WHERE ds BETWEEN ? AND ?) ORDER BY series_id, ds")
            window = [query.first, query.last]
            planned = con.execute(only_planned.format(query.sql),
                                  [*query.params, *window]).df()
            if known_passthrough(features):
                unplanned = switched_off(spec, planned, columns)
            else:  # a feature reads a covariate: compute the rows again without the plan
                plain = future_query(spec, features, origin, planned=False)
                unplanned = con.execute(only_planned.format(plain.sql),
                                        [*plain.params, *window]).df()
                for column in spec.known:  # covariates not switched off keep the plan's value
                    if column not in columns:
                        unplanned[column] = planned[column].to_numpy()
            lift = plan_lift(model, spec, planned, unplanned, plan, columns, origin,
                             champion_row.version)
            with registered(con, "_lift", lift):
                n = replace_range(con, PLAN_LIFT, "origin", origin, origin,
                                  "SELECT * REPLACE (CAST(ds AS DATE) AS ds) FROM _lift")
        total = lift[["p50_plan", "p50_unplanned", "lift"]].sum()
        return dg.MaterializeResult(metadata={
            "dagster/row_count": n, "origin": str(origin),
            "switched_off": ", ".join(columns),
            "series_planned": int(lift["series_id"].nunique()),
            "p50_with_plan": round(float(total["p50_plan"]), 1),
            "p50_without": round(float(total["p50_unplanned"]), 1),
            "lift_pct": round(100 * float(total["lift"]) / float(total["p50_unplanned"]), 2)
            if total["p50_unplanned"] > 0 else 0.0,
            "forecaster_version": champion_row.version,
        })

    return [covariate_plan, plan_lift_asset]
