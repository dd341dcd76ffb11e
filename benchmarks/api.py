"""API benchmark: latency (p50 / p95 / p99) and throughput of the main endpoints with concurrent
clients on loopback, against `funnelpulse serve` running in its own process.

    .venv/bin/python benchmarks/api.py --lake ~/funnelpulse/tables            # replica mode
    .venv/bin/python benchmarks/api.py --lake PATH --mode parquet              # files in place
    .venv/bin/python benchmarks/api.py --lake PATH --clients 10 --seconds 20 --json out.json

The lake should hold a month of gold (e.g. after `benchmarks/batch.py --keep` or the demo with
DEMO_DAYS=30). Each endpoint gets `--seconds` of closed-loop load from `--clients` threads, each
with its own keep-alive connection; the brand for the one-brand endpoints rotates over the top
20 brands so the numbers are not one cached answer. Client and server share the machine's cores.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

from figures import record, table

BIN = Path(sys.executable).parent


def _get(conn: http.client.HTTPConnection, path: str) -> tuple[int, bytes]:
    conn.request("GET", path)
    response = conn.getresponse()
    return response.status, response.read()


def _wait_for(port: int, timeout: float = 120) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            status, body = _get(conn, "/health")
            if status == 200:
                return json.loads(body)
        except OSError:
            time.sleep(0.5)
    raise SystemExit("the server did not come up")


def load(port: int, paths: list[str], clients: int, seconds: float) -> dict:
    """Closed-loop load: every client sends its next request when the last one answered."""
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def client(index: int) -> None:
        nonlocal errors
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine, bad, i = [], 0, index
        while time.perf_counter() < stop_at:
            path = paths[i % len(paths)]
            i += clients
            started = time.perf_counter()
            status, _ = _get(conn, path)
            mine.append(time.perf_counter() - started)
            bad += status != 200
        with lock:
            latencies.extend(mine)
            errors += bad

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    ordered = sorted(latencies)

    def pct(q: float) -> float:
        return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)

    return {
        "requests": len(ordered),
        "errors": errors,
        "requests_per_second": round(len(ordered) / elapsed, 1),
        "p50_ms": pct(0.50),
        "p95_ms": pct(0.95),
        "p99_ms": pct(0.99),
        "mean_ms": round(1000 * statistics.fmean(ordered), 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--lake", default=os.environ.get("FUNNELPULSE_LAKE"), required="FUNNELPULSE_LAKE" not in os.environ
    )
    parser.add_argument("--mode", choices=("replica", "parquet"), default="replica")
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()

    work = Path(os.environ.get("TMPDIR", "/tmp")) / f"funnelpulse-api-bench-{os.getpid()}"
    env = {**os.environ, "FUNNELPULSE_LAKE": args.lake, "FUNNELPULSE_HOME": str(work)}
    server = subprocess.Popen(
        [
            str(BIN / "funnelpulse"),
            "serve",
            "--port",
            str(args.port),
            "--mode",
            args.mode,
            "--log-level",
            "warning",
            "--refresh-seconds",
            "30",
        ],
        env=env,
    )
    try:
        health = _wait_for(args.port)
        hourly = health["tables"]["gold_funnel_hourly_brand"]
        first, last = hourly["first"], hourly["last"]
        conn = http.client.HTTPConnection("127.0.0.1", args.port)
        _, body = _get(conn, f"/api/brands?start={first}&end={last}&limit=21")
        brands = [b["value"] for b in json.loads(body)["items"] if b["value"]][:20]
        q = urllib.parse.quote
        endpoints = {
            "hourly, one brand, whole range": [
                f"/api/funnel/hourly?dimension=brand&value={q(b)}&start={first}&end={last}&limit=5000"
                for b in brands
            ],
            "daily, one brand, whole range": [
                f"/api/funnel/daily?dimension=brand&value={q(b)}&start={first}&end={last}" for b in brands
            ],
            "brands ranked, whole range": [f"/api/brands?start={first}&end={last}&limit=100"],
            "anomalies, newest 100": ["/api/anomalies?limit=100"],
            "live funnel, 12 h": ["/api/live?hours=12"],
        }
        results = {
            "mode": args.mode,
            "clients": args.clients,
            "seconds_per_endpoint": args.seconds,
            "range": [first, last],
            "hourly_brand_rows": hourly["rows"],
            "cores": os.cpu_count(),
            "endpoints": {},
        }
        print(
            f"{args.mode} mode, {args.clients} clients, {first}..{last} ({hourly['rows']:,} hourly brand rows)"
        )
        print(f"{'endpoint':34} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'errors':>7}")
        for name, paths in endpoints.items():
            load(args.port, paths, args.clients, min(2.0, args.seconds))  # warm-up
            result = load(args.port, paths, args.clients, args.seconds)
            results["endpoints"][name] = result
            print(
                f"{name:34} {result['requests_per_second']:>8} {result['p50_ms']:>8} {result['p95_ms']:>8} "
                f"{result['p99_ms']:>8} {result['errors']:>7}"
            )
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2))
        header = ["endpoint", "requests/s", "p50 ms", "p95 ms", "p99 ms", "errors"]
        rows = [
            [name, r["requests_per_second"], r["p50_ms"], r["p95_ms"], r["p99_ms"], r["errors"]]
            for name, r in results["endpoints"].items()
        ]
        title = f"{args.mode} mode, {args.clients} clients, {first}..{last} ({hourly['rows']:,} hourly brand rows)"
        record("api", [table(title, header, rows)])
    finally:
        server.terminate()
        server.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
