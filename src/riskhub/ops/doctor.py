"""``riskhub doctor``: the runbook's deployment checklist, checked against the running
configuration (this host's ``RISKHUB_*`` settings and the services they name).

Lines, in the checklist's order:

    database           reachable; PostgreSQL in production (SQLite: a warning)
    schema             migrated to the latest schema (``riskhub migrate``)
    outbox             no event waits long for the relay
    cache              Redis answers; required next to PostgreSQL
    blob_store         a probe object is written, read back and deleted under the prefix
    brokers            the ControlBus brokers answer
    topic              exists; partitions, replication, retention.ms, max.message.bytes checked
    dlq_topic          the same for the DLQ topic; RISKHUB_DLQ_TOPIC set
    consumer_group     ``worldservice-risk-hub`` has live members; its lag
    tokens             configured (not generated), read != write, >= 32 characters, files private
    network_allowlist  RISKHUB_ALLOWED_NETWORKS set

It changes nothing but its own probe object. Each check is bounded by ``timeout_s``.
"""

from __future__ import annotations

import asyncio

from riskhub.config import DOCTOR_TIMEOUT_S, Settings
from riskhub.ops.checklist import Finding, Report, guarded
from riskhub.ops.doctor_access import check_network, check_tokens
from riskhub.ops.doctor_bus import bus_findings
from riskhub.ops.doctor_services import check_blob_store, check_cache, store_findings


async def run_doctor(settings: Settings, *, timeout_s: float = DOCTOR_TIMEOUT_S) -> Report:
    """Check every line; never raises for a service that is down (its line fails instead)."""
    findings = [
        *await store_findings(settings, timeout_s),
        await guarded("cache", check_cache(settings), timeout_s),
        await guarded("blob_store", check_blob_store(settings), timeout_s),
        *await bus_findings(settings, timeout_s),
        await guarded("tokens", asyncio.to_thread(check_tokens, settings), timeout_s),
        Finding("network_allowlist", *check_network(settings)),
    ]
    return Report(findings)
