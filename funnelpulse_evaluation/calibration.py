"""How well the detector's single-hour evidence is calibrated on ordinary hours.

On a brand-hour no incident touches, z_hour (`count_z` over √φ, transforms/anomalies)
should behave like a standard normal: mean z² near 1, |z| ≥ 3 about 0.27 % of the time. Where it
does not, the threshold on accumulated evidence means something else than it says. The same
figures per part of the day, and the spread of mean z² over brand × part-of-day cells against
what sampling alone would give, say whether a brand's dispersion depends on the hour of day
(the case for a φ per brand and hour of day instead of per brand).

Ordinary hours: eligible (at least `min_views` views, from the first judged day) and not within
EDGE_HOURS of any injected hour of the same brand."""

from __future__ import annotations

import pandas as pd

EDGE_HOURS = 2
# brand × part-of-day cells with fewer ordinary hours say too little about their own dispersion
MIN_CELL_HOURS = 40
DAY_PARTS = {
    "night 00-05": range(6),
    "morning 06-11": range(6, 12),
    "afternoon 12-17": range(12, 18),
    "evening 18-23": range(18, 24),
}
NORMAL_TAIL_3 = 0.0027


def day_part(hour_of_day: pd.Series) -> pd.Series:
    parts = {hour: name for name, hours in DAY_PARTS.items() for hour in hours}
    return hour_of_day.map(parts)


def ordinary_hours(evidence: pd.DataFrame, truth: pd.DataFrame, eligible: pd.DataFrame) -> pd.DataFrame:
    """The eligible brand-hours of `evidence` (brand, window_start, hour_of_day, z_hour, phi)
    at least EDGE_HOURS + 1 hours from every injected hour of their brand."""
    near = pd.concat(
        [
            truth[["brand", "window_start"]].assign(
                window_start=truth["window_start"] + pd.Timedelta(hours=shift)
            )
            for shift in range(-EDGE_HOURS, EDGE_HOURS + 1)
        ],
        ignore_index=True,
    ).drop_duplicates()
    judged = evidence.merge(eligible, on=["brand", "window_start"])
    marked = judged.merge(near.assign(_near=True), on=["brand", "window_start"], how="left")
    return marked[marked["_near"].isna()].drop(columns="_near")


def calibration(ordinary: pd.DataFrame) -> dict:
    """Sums that pool over scenarios (hours, Σz², hours with |z| ≥ 3, Σφ) overall and per part
    of the day, and for the brand × part-of-day cells with at least MIN_CELL_HOURS hours (of
    brands with two or more): the squared deviations of each cell's mean z² from its brand's
    mean over its cells, and what sampling alone would make them."""
    z2 = ordinary["z_hour"].astype(float) ** 2
    frame = ordinary.assign(_z2=z2, _tail=z2 >= 9.0, _part=day_part(ordinary["hour_of_day"]))

    def sums(rows: pd.DataFrame) -> dict:
        return {
            "hours": len(rows),
            "sum_z2": float(rows["_z2"].sum()),
            "tail_3": int(rows["_tail"].sum()),
            "sum_phi": float(rows["phi"].sum()),
        }

    # within each brand, how far its parts of the day's mean z² lie from the brand's mean over
    # them, against how far sampling alone would put them (each cell's Var(z²) / hours)
    cells = frame.groupby(["brand", "_part"])["_z2"].agg(["size", "mean", "var"]).reset_index()
    cells = cells[cells["size"] >= MIN_CELL_HOURS]
    cells = cells[cells.groupby("brand")["brand"].transform("size") >= 2]
    k = cells.groupby("brand")["brand"].transform("size")
    sampling = cells["var"] / cells["size"]
    deviation = cells["mean"] - cells.groupby("brand")["mean"].transform("mean")
    expected = (
        sampling * (1 - 2 / k) + cells.assign(_s=sampling).groupby("brand")["_s"].transform("sum") / k**2
    )
    return {
        "all": sums(frame),
        "by_part": {part: sums(frame[frame["_part"] == part]) for part in DAY_PARTS},
        "cells": len(cells),
        "within_brand_squares": float((deviation**2).sum()),
        "within_brand_sampling": float(expected.sum()),
    }


def pooled(calibrations: list[dict]) -> dict:
    """Mean z², share of |z| ≥ 3 and mean φ over several scenarios' `calibration`, overall and per
    part of the day, and the brand × part-of-day spread as the ratio of the cells' variance to
    sampling's (about 1 when a brand's dispersion does not depend on the part of the day)."""

    def rates(key: str | None) -> dict:
        rows = [c["all"] if key is None else c["by_part"][key] for c in calibrations]
        hours = sum(r["hours"] for r in rows)
        if not hours:
            return {"hours": 0, "mean_z2": None, "tail_3": None, "mean_phi": None}
        return {
            "hours": hours,
            "mean_z2": sum(r["sum_z2"] for r in rows) / hours,
            "tail_3": sum(r["tail_3"] for r in rows) / hours,
            "mean_phi": sum(r["sum_phi"] for r in rows) / hours,
        }

    sampling = sum(c["within_brand_sampling"] for c in calibrations)
    return {
        "all": rates(None),
        "by_part": {part: rates(part) for part in DAY_PARTS},
        "cells": sum(c["cells"] for c in calibrations),
        "cell_spread_ratio": sum(c["within_brand_squares"] for c in calibrations) / sampling
        if sampling
        else None,
    }
