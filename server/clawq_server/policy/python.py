"""The static check of execute_python code: a first filter, not the boundary.

It refuses, with the line and the reason: imports outside the principal's allow list
(and every relative import), any attribute or keyword-pattern name starting with two
underscores (``x.__class__``, ``case C(__class__=c)``), names that reach the
interpreter's machinery (``__import__``, ``__builtins__``, ``__loader__`` and other
dunder names except ``__name__``), the builtins that run, fetch or open by a computed
name (exec, eval, compile, getattr, setattr, delattr, globals, locals, vars,
breakpoint, input, help, memoryview), and format strings that reach a dunder
(``"{0.__class__}"``). ``open`` is refused outright: files are read and written through
the file tools, which apply the path policy. Code that slips past this check still runs
in the sandbox, which is what actually keeps it inside the roots, off the network and
within its time.
"""

from __future__ import annotations

import ast
import re

from clawq_server.errors import InvalidArgument, PolicyDenied

_BLOCKED_NAMES = frozenset(
    {
        "exec",
        "eval",
        "compile",
        "open",
        "getattr",
        "setattr",
        "delattr",
        "globals",
        "locals",
        "vars",
        "breakpoint",
        "input",
        "help",
        "memoryview",
        "__import__",
    }
)
_ALLOWED_DUNDER_NAMES = frozenset({"__name__"})
_FORMAT_DUNDER = re.compile(r"\{[^{}]*__")


def check_python(code: str, allowed_imports: frozenset[str]) -> None:
    """Raise PolicyDenied naming the first offending line, or InvalidArgument on bad syntax."""
    if "\0" in code:
        raise InvalidArgument.field("args.code", "contains a NUL character")
    try:
        tree = ast.parse(code, filename="<code>")
    except SyntaxError as exc:
        raise InvalidArgument.field(
            "args.code", f"line {exc.lineno}: syntax error: {exc.msg}"
        ) from None
    for node in ast.walk(tree):
        reason = _offence(node, allowed_imports)
        if reason is not None:
            line = getattr(node, "lineno", 0)
            raise PolicyDenied.field("args.code", f"line {line}: {reason}")


def _offence(node: ast.AST, allowed: frozenset[str]) -> str | None:
    if isinstance(node, ast.Import):
        return _imports([alias.name for alias in node.names], allowed)
    if isinstance(node, ast.ImportFrom):
        if node.level:
            return "relative imports are not allowed"
        return _imports([node.module or ""], allowed)
    if isinstance(node, ast.Name):
        return _name(node.id)
    return _dunder(node)


def _dunder(node: ast.AST) -> str | None:
    match node:
        case ast.Attribute(attr=attr) if attr.startswith("__"):
            return f"access to the attribute {attr!r} is not allowed"
        case ast.MatchClass(kwd_attrs=attrs) if any(a.startswith("__") for a in attrs):
            return "matching on dunder attributes is not allowed"
        case ast.Constant(value=str() as text) if _FORMAT_DUNDER.search(text):
            return "format strings that reach dunder attributes are not allowed"
    return None


def _imports(modules: list[str], allowed: frozenset[str]) -> str | None:
    for module in modules:
        if module.split(".")[0] not in allowed:
            return f"import of {module!r} is not allowed (allowed: {', '.join(sorted(allowed))})"
    return None


def _name(name: str) -> str | None:
    if name in _BLOCKED_NAMES:
        return f"use of {name!r} is not allowed"
    if name.startswith("__") and name not in _ALLOWED_DUNDER_NAMES:
        return f"use of the name {name!r} is not allowed"
    return None
