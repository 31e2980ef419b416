"""Tracing's cost, measured A/B on a shared machine: the same work with the code before
tracing (another checkout, BEFORE=path, optional), with tracing off, and with it on
(OTLP/HTTP to a local sink, the SDK's default batch processor), alternated round by
round in fresh processes against one Redis, then the median of each.

    BEFORE=/path/to/old/checkout ROUNDS=5 N=20000 python benchmarks/tracing_ab.py

Each round runs, per variant: 2,000 adds one at a time to the regular queue; then the
regular queue's and the signals fast path's processing of 2 x N pre-added jobs with a
no-op handler (one worker, burst run). Each is measured twice: the rate (wall clock,
which other tenants' load moves a lot) and the process's CPU time per job in µs (every
thread's, the exporter's included; Redis's own work is not in it), which load moves less.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TREE = HERE.parent
SINGLE_ADDS = 2_000
MEASURES = ("enqueue_per_s", "regular_process_per_s", "fast_process_per_s",
            "enqueue_cpu_us", "regular_cpu_us", "fast_cpu_us")


async def child(url: str, n: int) -> dict[str, float]:
    """One variant's run, in a process whose PYTHONPATH is the tree measured."""
    import secrets

    import streams
    from config import Settings
    from streams import JobContext, JobSpec, Producer, QueueWorker, connect

    tree = Path(os.environ["PYTHONPATH"])
    assert Path(streams.__file__).is_relative_to(tree), streams.__file__
    # (the test venv's editable install would lend this tree's module to the code before it)
    has_tracing = (tree / "streams" / "tracing.py").exists()

    async def noop(ctx: JobContext) -> None:
        return None

    settings = Settings(redis_url=url, key_prefix=f"benchab{secrets.token_hex(3)}", read_block=1,
                        queues={"research": {"rate_limit": None, "concurrency": 100, "keep_completed": 1000},
                                "signals": {"concurrency": 100}})  # as benchmarks/engine.py's settings_for
    if has_tracing:
        from streams import tracing

        tracing.setup(settings)
    redis = connect(settings)
    producer, figures = Producer(redis, settings), {}
    started, cpu = time.perf_counter(), time.process_time()
    for i in range(SINGLE_ADDS):
        await producer.add("research", {"n": i})
    figures["enqueue_per_s"] = SINGLE_ADDS / (time.perf_counter() - started)
    figures["enqueue_cpu_us"] = (time.process_time() - cpu) / SINGLE_ADDS * 1e6
    for queue, name in (("research", "regular"), ("signals", "fast")):
        await producer.add_many(queue, [JobSpec({"n": i}) for i in range(2 * n)])
        count = 2 * n + (SINGLE_ADDS if queue == "research" else 0)
        started, cpu = time.perf_counter(), time.process_time()
        await QueueWorker(settings, queue, noop).run(burst=True)
        figures[f"{name}_process_per_s"] = count / (time.perf_counter() - started)
        figures[f"{name}_cpu_us"] = (time.process_time() - cpu) / count * 1e6
        if has_tracing:  # spans still queued for export are not the next row's cost
            from opentelemetry import trace

            getattr(trace.get_tracer_provider(), "force_flush", lambda: None)()
    await redis.aclose()
    return figures


def run_variant(tree: Path, url: str, n: int, otlp: str | None) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["PYTHONPATH"] = str(tree)
    if otlp:
        env.update(OTEL_TRACES_EXPORTER="otlp", OTEL_EXPORTER_OTLP_ENDPOINT=otlp)
    done = subprocess.run([sys.executable, __file__, "child", url, str(n)], env=env, cwd=tree,
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.splitlines()[-1])


def main() -> None:
    sys.path.insert(0, str(HERE))
    from common import event_count, redis_url
    from otlp_sink import endpoint, start_sink

    n, rounds = event_count(20_000), int(os.environ.get("ROUNDS", 5))
    before = os.environ.get("BEFORE")
    sink = start_sink()
    variants = {**({"before": (Path(before), None)} if before else {}),
                "off": (TREE, None), "on": (TREE, endpoint(sink))}
    results: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    with redis_url() as url:
        for r in range(rounds):
            order = list(variants)[r % len(variants):] + list(variants)[:r % len(variants)]
            for name in order:
                tree, otlp = variants[name]
                results[name].append(run_variant(tree, url, n, otlp))
                print(f"round {r + 1} {name}: " + ", ".join(f"{k} {v:,.0f}" for k, v in results[name][-1].items()),
                      file=sys.stderr)
    print(f"\nmedians of {rounds} rounds, N={n} (OTLP sink: {sink.requests} requests, "
          f"{sink.received_bytes:,} bytes)")
    print("variant  " + "  ".join(f"{m:>22}" for m in MEASURES))  # rates: higher is better; cpu: lower
    base = {m: statistics.median(r[m] for r in results["off"]) for m in MEASURES}
    for name, runs in results.items():
        cells = []
        for m in MEASURES:
            median = statistics.median(run[m] for run in runs)
            cells.append(f"{median:>13,.{1 if 'cpu' in m else 0}f} ({median / base[m]:.2f}x)")
        print(f"{name:<8} " + "  ".join(f"{c:>22}" for c in cells))
    for name, runs in results.items():
        print(json.dumps({"variant": name, **{m: round(statistics.median(r[m] for r in runs), 1)
                                               for m in MEASURES}}))


if __name__ == "__main__":
    if sys.argv[1:2] == ["child"]:
        print(json.dumps(asyncio.run(child(sys.argv[2], int(sys.argv[3])))))
    else:
        main()
