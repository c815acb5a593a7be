"""The tool result cache: never stale, after the permission check."""
