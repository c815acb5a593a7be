"""Benchmarks of clawq against the raw limits beneath it and the queues users pick instead."""
