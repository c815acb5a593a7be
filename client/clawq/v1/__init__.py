"""Generated from protos/clawq/v1."""
