"""Runbook entry point: ``python scripts/backfill_risk_snapshots.py --dsn $DB --redis $REDIS --world w1``.

Runs ``riskhub backfill`` with the same flags (``--world`` repeatable, ``--all``, ``--re-emit``).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # also from a plain checkout

from riskhub.cli import app

if __name__ == "__main__":
    app(["backfill", *sys.argv[1:]], prog_name="backfill_risk_snapshots.py")
