"""``python -m soak [--duration 600] ...`` (with ``tests`` on ``sys.path``; ``make soak`` does that):
prints the ledger table and exits 1 on any loss, double effect or orphan blob."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from soak import SoakOptions, run_soak
from soak.faults import FAULTS


def parse(argv: list[str]) -> SoakOptions:
    """Command-line options (defaults: ``SoakOptions``)."""
    d = SoakOptions()
    parser = argparse.ArgumentParser(
        prog="python -m soak",
        description="The production topology on loopback under load and faults, then a ledger;"
        " exit 1 on any loss, double effect or orphan blob.",
    )
    parser.add_argument("--duration", type=float, default=d.duration_s, help="seconds of load")
    parser.add_argument("--worlds", type=int, default=d.worlds)
    parser.add_argument("--rate", type=float, default=d.rate, help="writes per second")
    parser.add_argument("--concurrency", type=int, default=d.concurrency, help="writes in flight at most")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument(
        "--broker-pause", type=float, default=d.broker_pause_s, help="seconds the broker is frozen"
    )
    parser.add_argument("--drain-timeout", type=float, default=d.drain_timeout_s)
    parser.add_argument(
        "--faults",
        default=",".join(d.faults),
        help=f"comma-separated, injected in turn; of {', '.join(FAULTS)}",
    )
    parser.add_argument("--fault-every", type=float, default=d.fault_spacing_s, help="seconds between faults")
    parser.add_argument(
        "--no-pin", action="store_true", help="do not pin the runner and the services to CPUs"
    )
    parser.add_argument(
        "--workdir", type=Path, default=None, help="logs and service data (default: a temp dir)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory when the soak passes")
    args = parser.parse_args(argv)
    return SoakOptions(
        duration_s=args.duration,
        worlds=args.worlds,
        rate=args.rate,
        concurrency=args.concurrency,
        seed=args.seed,
        broker_pause_s=args.broker_pause,
        drain_timeout_s=args.drain_timeout,
        faults=_faults(parser, args.faults),
        fault_spacing_s=args.fault_every,
        pin=not args.no_pin,
        workdir=args.workdir,
        keep=args.keep,
    )


def _faults(parser: argparse.ArgumentParser, text: str) -> tuple[str, ...]:
    kinds = tuple(kind.strip() for kind in text.split(",") if kind.strip())
    unknown = [kind for kind in kinds if kind not in FAULTS]
    if unknown or not kinds:
        parser.error(f"--faults: unknown {unknown or 'none given'}; choose from {', '.join(FAULTS)}")
    return kinds


def main(argv: list[str]) -> int:
    """Run the soak, print its report; 0 when nothing was lost, doubled or orphaned."""
    # The SDK logs each failed attempt; failovers are expected under the faults (the ledger counts them).
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    logging.getLogger("riskhub.client").setLevel(logging.ERROR)
    result = asyncio.run(run_soak(parse(argv), progress=lambda text: print(text, flush=True)))
    print(result.report(), flush=True)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
