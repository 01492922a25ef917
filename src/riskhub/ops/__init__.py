"""Operator tasks the command line runs: freshness monitoring, backfill."""
