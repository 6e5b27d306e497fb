"""`python -m certq chaos <scenario>`: a fault drill on a private certq on loopback, ending in a ledger."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from typing import Any

from certq.cli import EXIT_FAILURE, EXIT_OK, CommandError

MAX_N = 2_000
MAX_TIMEOUT_S = 1_800.0


def register(subparsers: Any) -> None:
    from certq.chaos.scenarios import SCENARIOS

    lines = "\n".join(f"  {name:<18} {scenario.summary}" for name, scenario in SCENARIOS.items())
    parser = subparsers.add_parser(
        "chaos",
        help="run a fault drill (worker kill, Redis/PostgreSQL restart, failover, ...) and print the ledger",
        description="Starts its own Redis, PostgreSQL, model stub and worker processes on 127.0.0.1 (never the "
        "configured servers), accepts N certifications, strikes once a quarter have finished, waits "
        f"until every one is final, and prints the ledger.\n\nscenarios:\n{lines}\n  all",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("scenario", choices=[*SCENARIOS, "all"], metavar="scenario")
    parser.add_argument("--n", type=int, default=40, help="certifications to run (default 40)")
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds to wait for them after the fault (default 120)"
    )
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--concurrency", type=int, default=3, help="jobs per worker (default 3)")
    parser.add_argument(
        "--topology",
        choices=["single", "sentinel", "cluster"],
        help="Redis to run on (default: the scenario's own; worker-*, postgres-restart and provider-hang run on any)",
    )
    parser.add_argument("--json", action="store_true", help="print the ledgers as JSON")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from certq.chaos.ledger import render
    from certq.chaos.scenarios import SCENARIOS, run_scenario, topologies

    if not 1 <= args.n <= MAX_N:
        raise CommandError(f"--n must be between 1 and {MAX_N}", 2)
    if not 1 <= args.timeout <= MAX_TIMEOUT_S:
        raise CommandError(f"--timeout must be between 1 and {MAX_TIMEOUT_S:.0f} seconds", 2)
    if not 1 <= args.workers <= 16 or not 1 <= args.concurrency <= 50:
        raise CommandError("--workers must be 1..16 and --concurrency 1..50", 2)
    # The reconciler's warnings are the drill working as intended; the ledger counts them.
    logging.getLogger("certq.reconcile").setLevel(logging.ERROR)
    logging.getLogger("asyncpg").setLevel(logging.CRITICAL)  # its pool reconnects noisily through a PG restart
    names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    if args.topology is not None:
        names = [name for name in names if args.topology in topologies(name)]
        if not names:
            raise CommandError(f"{args.scenario} cannot run on {args.topology}", 2)
    ledgers = []
    for name in names:
        try:
            ledgers.append(
                asyncio.run(
                    run_scenario(
                        name,
                        n=args.n,
                        timeout_s=args.timeout,
                        workers=args.workers,
                        concurrency=args.concurrency,
                        topology=args.topology,
                    )
                )
            )
        except Exception as exc:  # a broken drill is reported, not a traceback
            raise CommandError(f"chaos {name}: the drill could not run: {type(exc).__name__}: {exc}") from None
    if args.json:
        print(json.dumps([ledger.as_dict() for ledger in ledgers], indent=2, default=str))
    else:
        print(render(ledgers))
        for ledger in ledgers:
            print(f"{ledger.scenario}: {'OK' if ledger.ok else 'NOT OK'} {json.dumps(ledger.notes, default=str)}")
    return EXIT_OK if all(ledger.ok for ledger in ledgers) else EXIT_FAILURE
