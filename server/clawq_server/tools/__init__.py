"""Tools: the protocol, the registry, and the built-in file, command and Python tools."""
