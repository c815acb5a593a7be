"""clawq server: queues, runs, caches and records tool calls for AI agents."""
