"""Runbook entry point: ``python scripts/risk_hub_monitor.py --base-url $WS_URL --world w1
--world w2 --token $HUB_TOKEN`` (``--warn-seconds 600``, ``--crit-seconds 1800``, ``--stage``,
``--json``).

Runs ``riskhub monitor`` with the same flags (``--token`` defaults to env ``HUB_TOKEN``). Nagios
exit codes: 0 OK, 1 WARN, 2 CRIT or no snapshot, 3 hub unreachable, token refused or bad
arguments.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # also from a plain checkout

from riskhub.cli import app

if __name__ == "__main__":
    app(["monitor", *sys.argv[1:]], prog_name="risk_hub_monitor.py")
