"""The holiday calendar as a dense day table: the features join it instead of recomputing dates.

It runs a year past the data so that forecasts for future dates see the same holidays.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from forecast_platform.datasets.synthetic import holiday_calendar

DAYS_TO_HOLIDAY_CAP = 99


def calendar_frame(start: dt.date, end: dt.date) -> pd.DataFrame:
    """One row per day: ``ds, is_holiday, holiday, days_to_holiday`` (0 on the holiday itself)."""
    horizon_end = end + dt.timedelta(days=366)
    days = pd.date_range(start, horizon_end, freq="D")
    holidays = holiday_calendar(start, horizon_end + dt.timedelta(days=DAYS_TO_HOLIDAY_CAP))
    holidays = holidays.drop_duplicates("date")
    names = holidays.set_index("date")["holiday"].reindex(days)
    # Days until the next holiday: search the sorted holiday dates for each day.
    hol = holidays["date"].to_numpy(dtype="datetime64[D]")
    idx = np.searchsorted(hol, days.to_numpy(dtype="datetime64[D]"), side="left")
    nxt = np.where(idx < len(hol), hol[np.minimum(idx, len(hol) - 1)], np.datetime64("NaT"))
    gap = (nxt - days.to_numpy(dtype="datetime64[D]")).astype("timedelta64[D]").astype(float)
    gap = np.where(np.isnan(gap), DAYS_TO_HOLIDAY_CAP, np.minimum(gap, DAYS_TO_HOLIDAY_CAP))
    return pd.DataFrame(
        {
            "ds": days.date,
            "is_holiday": names.notna().to_numpy().astype("int32"),
            "holiday": names.to_numpy(),
            "days_to_holiday": gap.astype("int32"),
        }
    )
