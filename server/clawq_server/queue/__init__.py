"""Durable task queues: the protocol and its SQLite and Redis implementations."""
