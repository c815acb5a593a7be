"""Policy: who may call what, on which paths, with which commands, within which limits."""
