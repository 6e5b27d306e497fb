"""Wall time and requests per certification against a real local model server (and a slow loopback stub).

    .venv/bin/python -m bench.certification --runs 10
    .venv/bin/python -m bench.certification --target stub --stub-delay-ms 100 --runs 3

For each run it reports the wall time, the requests sent, the sum of all probe latencies (what a purely
sequential suite would take) and the slowest probe chain (gate probe + slowest concurrent probe + the final
stress probe), whose difference from the wall time is the engine's overhead.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from typing import Any

from certq.certification import ModelEndpoint, Verdict, run_certification
from certq.certification.localmodel import start_tiny_model_server, stop_llama_server
from certq.certification.probes import SUITE

PHASE = {spec.name: spec.phase for spec in SUITE}


def chain_ms(verdict: Verdict) -> tuple[float, float]:
    """(sum of probe latencies, slowest chain through the phases) in ms."""
    latency = {p["name"]: p["latencyMs"] or 0.0 for p in verdict.test_results}
    total = sum(latency.values())
    chain = sum(max((ms for name, ms in latency.items() if PHASE[name] == phase), default=0.0) for phase in (1, 2, 3))
    return total, chain


async def bench(endpoint: ModelEndpoint, runs: int) -> dict[str, Any]:
    walls, requests, sums, chains, statuses = [], [], [], [], set()
    await run_certification(endpoint)  # warm-up: connections, model caches
    for _ in range(runs):
        started = time.perf_counter()
        verdict = await run_certification(endpoint)
        walls.append((time.perf_counter() - started) * 1000)
        requests.append(verdict.metrics["requests"])
        total, chain = chain_ms(verdict)
        sums.append(total)
        chains.append(chain)
        statuses.add(verdict.status)
    return {
        "runs": runs,
        "status": "/".join(sorted(statuses)),
        "wall_p50_ms": statistics.median(walls),
        "wall_max_ms": max(walls),
        "requests": statistics.median(requests),
        "probe_sum_ms": statistics.median(sums),
        "chain_ms": statistics.median(chains),
        "overhead_ms": statistics.median(w - c for w, c in zip(walls, chains, strict=True)),
    }


def print_row(target: str, row: dict[str, Any]) -> None:
    print(
        f"{target:<28} {row['status']:<10} {row['runs']:>4} {row['wall_p50_ms']:>10.0f} {row['wall_max_ms']:>9.0f} "
        f"{row['requests']:>5.0f} {row['probe_sum_ms']:>12.0f} {row['chain_ms']:>9.0f} {row['overhead_ms']:>9.1f}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--target", choices=["llama", "stub", "both"], default="both")
    parser.add_argument("--stub-delay-ms", type=float, default=100.0)
    args = parser.parse_args()
    print(
        f"{'target':<28} {'status':<10} {'runs':>4} {'wall p50':>10} {'wall max':>9} {'reqs':>5} "
        f"{'sum probes':>12} {'chain':>9} {'overhead':>9}   (ms)"
    )
    if args.target in ("llama", "both"):
        with tempfile.TemporaryDirectory() as directory:
            for mode in ("scripted", "random"):
                url, process, _ = start_tiny_model_server(directory, mode)
                try:
                    row = await bench(ModelEndpoint("openai", f"tiny-{mode}", "local", url), args.runs)
                finally:
                    stop_llama_server(process)
                print_row(f"llama-cpp-python tiny-{mode}", row)
    if args.target in ("stub", "both"):
        from tests.certification.stubs import OpenAIHandler, serve

        with serve(OpenAIHandler, delay_s=args.stub_delay_ms / 1000) as (root, _):
            row = await bench(ModelEndpoint("openai", "stub", "local", f"{root}/v1"), max(1, args.runs // 3))
        print_row(f"stub, {args.stub_delay_ms:.0f} ms per answer", row)


if __name__ == "__main__":
    asyncio.run(main())
