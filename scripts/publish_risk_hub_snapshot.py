"""Runbook entry point: ``uv run python scripts/publish_risk_hub_snapshot.py --base-url $WS_URL
--world w1 --snapshot operations/risk_hub/samples/risk_snapshot_with_realized_and_stress.json
--token $HUB_TOKEN --actor gateway --stage paper``.

Runs ``riskhub publish`` with the same flags (``--token`` defaults to env ``HUB_TOKEN``;
``--inline-cov-threshold`` and ``--blob-url`` offload large parts). Exit 0 stored or already
stored, 1 nothing sent (contract violation, or bad usage: no token, unreadable file, invalid
URL), 2 refused by the hub, 3 hub unreachable.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # also from a plain checkout

from riskhub.cli import app

if __name__ == "__main__":
    app(["publish", *sys.argv[1:]], prog_name="publish_risk_hub_snapshot.py")
