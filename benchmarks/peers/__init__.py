"""Peer task queues measured on the same private Redis: one module per library."""
