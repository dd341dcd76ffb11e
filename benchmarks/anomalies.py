"""Anomaly evaluation harness: precision, recall and F1 against injected ground truth, beside the
seed's method on the same data.

    .venv/bin/python benchmarks/anomalies.py                 # the standard scenarios
    .venv/bin/python benchmarks/anomalies.py --quick         # one small scenario
    .venv/bin/python benchmarks/anomalies.py --json out.json
    .venv/bin/python benchmarks/anomalies.py --holdout      # other seeds, never tuned on

For each scenario (seed, days, events per day, injected anomalies) it generates data with the
sample generator, materializes bronze → silver → gold_funnel_hourly_brand → the anomaly table
with real Dagster runs, and scores brand-hours:
- positive: a brand-hour inside an injected anomaly window (ground truth CSV);
- flagged: a row of gold_anomalies_hourly_brand (ours), or |z| ≥ 2 of the seed's method: the
  hour's conversion rate against the mean and standard deviation of the brand's hourly rates
  over all hours of the data (and of its hours of the same hour of day), judged hour included;
- only brand-hours with at least `--min-views` views (default 50) on days after the first week
  (where anomalies may be injected) count.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from funnelpulse_dagster.evaluation.scenarios import HOLDOUT, QUICK, SCENARIOS, run_scenario
from funnelpulse_dagster.resources.spark import SparkResource


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--holdout", action="store_true", help="run the held-out scenarios e–h instead of a–d"
    )
    parser.add_argument("--only", help="scenario letters to run, e.g. ab")
    parser.add_argument("--min-views", type=int, default=50)
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="funnelpulse-anomaly-eval-"))
    spark_resource = SparkResource(master="local[2]")
    results = []
    try:
        standard = HOLDOUT if args.holdout else SCENARIOS
        chosen = QUICK if args.quick else [s for s in standard if not args.only or s.name[0] in args.only]
        for scenario in chosen:
            results.append(run_scenario(scenario, spark_resource, work, args.min_views))
            r = results[-1]
            print(
                f"{r['scenario']:40} eligible {r['eligible_brand_hours']:6} positive {r['positive_brand_hours']:4}  "
                f"ours P {r['ours']['precision']:.2f} R {r['ours']['recall']:.2f} F1 {r['ours']['f1']:.2f}  "
                f"seed P {r['seed']['precision']:.2f} R {r['seed']['recall']:.2f} F1 {r['seed']['f1']:.2f}",
                flush=True,
            )
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    totals = {}
    for method in ("ours", "seed"):
        tp = sum(r[method]["tp"] for r in results)
        fp = sum(r[method]["fp"] for r in results)
        fn = sum(r[method]["fn"] for r in results)
        p = tp / (tp + fp) if tp + fp else 0.0
        rc = tp / (tp + fn) if tp + fn else 0.0
        totals[method] = {
            "tp": tp,
            "fp": fp,
            "fn": fn,
            "precision": p,
            "recall": rc,
            "f1": 2 * p * rc / (p + rc) if p + rc else 0.0,
        }
        print(
            f"{'all scenarios, ' + method:40} P {p:.2f} R {rc:.2f} F1 {totals[method]['f1']:.2f} (tp {tp}, fp {fp}, fn {fn})"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"scenarios": results, "total": totals}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
