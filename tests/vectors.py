"""DESIGN.md's interoperability test vector: the runbook sample posted to w1 with ttl_sec 10, actor
gateway and stage paper normalizes to this text, whose hashes are these."""

VECTOR_TEXT = (
    '{"as_of":"2025-01-01T00:00:00Z","provenance":{"actor":"gateway","stage":"paper"},'
    '"realized_returns":{"strategy_a":[0.01,-0.005,0.002],"strategy_b":[0.008,-0.004,0.001]},'
    '"stress":{"crash":{"max_drawdown":0.25},"slowdown":{"max_drawdown":0.12}},'
    '"ttl_sec":10,"version":"v1","weights":{"strategy_a":0.6,"strategy_b":0.4},"world_id":"w1"}'
)
VECTOR_BLAKE3 = "blake3:6f51f65f0e47418ef1003d6818b3fa4d927f993bb67ab38e9c175e81cc12b3e4"
VECTOR_SHA256 = "sha256:c6b7b8cadc9eebf4175cfac973a360346ae2af3266ccbae8af42a9f386226338"
