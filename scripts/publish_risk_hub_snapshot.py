"""Runbook entry point: ``uv run python scripts/publish_risk_hub_snapshot.py --base-url $WS_URL
--world w1 --snapshot operations/risk_hub/samples/risk_snapshot_with_realized_and_stress.json
--token $HUB_TOKEN --actor gateway --stage paper``.

Runs ``riskhub publish`` with the same flags (``--token`` defaults to env ``HUB_TOKEN``;
``--inline-cov-threshold`` and ``--blob-url`` offload large parts). Exit 0 stored or already
stored, 1 nothing sent (contract violation, or bad usage: no token, unreadable file, invalid
URL), 2 refused by the hub, 3 hub unreachable.
"""

from runbook_entry import run_riskhub  # scripts/ is on sys.path: it is this script's directory

if __name__ == "__main__":
    run_riskhub("publish", script="publish_risk_hub_snapshot.py", cannot_start_exit=1)
