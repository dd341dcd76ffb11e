"""Hourly brand conversion anomalies: baselines from earlier days only, a count test, evidence
that accumulates over consecutive hours, and root-cause hints.

Why not the seed's method (a z-score of the hour's rate against the brand's mean over all
history): its baseline contains the judged hour and every later one, so verdicts change as days
arrive and it cannot run live; and a rate from 40 views is noisy, so 2σ floods the list.

The detector, per brand-hour t of a judged day D:
- baseline rate p = purchasing sessions / viewing sessions of the brand in the same hour of day (and weekday) over
  the `LOOKBACK_DAYS` days before D, each level shrunk towards the one above it (global → brand
  → brand × hour of day → brand × hour × weekday) by a prior worth a fixed number of views, so
  a thin history falls back to a broader baseline instead of a noisy one; times the shop's
  factor, how far the other brands convert above or below their baselines over the last
  `SHOP_HOURS` hours (the weighted median of those expecting at least `SHOP_MIN_SESSIONS`
  purchasing sessions there, each weight capped at `SHOP_MAX_WEIGHT` of the hour's, and 1 with
  fewer than `SHOP_MIN_BRANDS` of them: a holiday lifts every brand, and the brand's own
  incident is not in it), 1 while their pooled sessions stay within `SHOP_DEPARTURE_Z` Poisson
  standard deviations of their expectation;
- the hour's evidence z_t: observed purchasing sessions x against λ = viewing sessions · p as
  the normal quantile of x's Poisson tail (mid-p, by the Wilson–Hilferty cube root: equally
  honest for drops and spikes, `baselines.count_z`), divided by √φ, the brand's over-dispersion
  measured on its history (what is left of extra-binomial variation); hours under
  `MIN_EVIDENCE_VIEWS` views carry no evidence and hours under `MIN_VIEWS` are never flagged;
- accumulated evidence S_k(t): the same tail for the k hours ending at t together, their
  purchasing sessions summed against their summed λ, over √φ, for k = 1..6; a sustained drop of
  a mid-sized brand adds up even when no single hour is conclusive;
- a flag when a run covering the hour passed: max_k |S_k| ≥ `THRESHOLD` at the hour itself, or
  at a later hour of the same day whose run reaches back over it (the first hours of an incident
  rarely pass alone); the hour itself deviates the same way (|z_t| ≥ `CURRENT_HOUR_Z`), so an
  hour after an anomaly ends is not flagged for its predecessors; and the run is not diluted by
  the hour (no part of it without the hour scores higher), so an ordinary hour at a strong
  incident's edge is not part of it.

Baselines look backwards only and runs reach back only within the judged day, so a day's
verdicts depend on days D−LOOKBACK−1 … D and never change when later days are added. Live hours
are judged the same way; a later hour of the day can add its earlier hours to an incident, so
the live judge re-judges every closed hour of the day.
"""

from funnelpulse_dagster.transforms.anomalies.baselines import history_days
from funnelpulse_dagster.transforms.anomalies.evidence import detect, evidence_for_days, with_baseline_band
from funnelpulse_dagster.transforms.anomalies.hints import anomaly_rows, root_cause_hints
from funnelpulse_dagster.transforms.anomalies.live import live_gold, live_silver

__all__ = [
    "anomaly_rows",
    "detect",
    "evidence_for_days",
    "history_days",
    "live_gold",
    "live_silver",
    "root_cause_hints",
    "with_baseline_band",
]
