"""Runbook entry point: ``python scripts/risk_hub_monitor.py --base-url $WS_URL --world w1
--world w2 --token $HUB_TOKEN`` (``--warn-seconds 600``, ``--crit-seconds 1800``, ``--stage``,
``--json``).

Runs ``riskhub monitor`` with the same flags (``--token`` defaults to env ``HUB_TOKEN``). Nagios
exit codes: 0 OK, 1 WARN, 2 CRIT or no snapshot, 3 hub unreachable, token refused or bad
arguments.
"""

from runbook_entry import run_riskhub  # scripts/ is on sys.path: it is this script's directory

if __name__ == "__main__":
    run_riskhub("monitor", script="risk_hub_monitor.py", cannot_start_exit=3)
