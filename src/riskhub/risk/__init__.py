"""Risk analytics (pure numpy, no I/O) and the workers the consumer runs on each snapshot event."""
