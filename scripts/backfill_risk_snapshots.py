"""Runbook entry point: ``python scripts/backfill_risk_snapshots.py --dsn $DB --redis $REDIS --world w1``.

Runs ``riskhub backfill`` with the same flags (``--world`` repeatable, ``--all``, ``--re-emit``).
"""

from runbook_entry import run_riskhub  # scripts/ is on sys.path: it is this script's directory

if __name__ == "__main__":
    run_riskhub("backfill", script="backfill_risk_snapshots.py", cannot_start_exit=2)
