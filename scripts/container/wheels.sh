#!/usr/bin/env bash
# Builds clawq and every dependency of clawq[server] as wheels into .containers/wheels/, the
# folder the Dockerfile installs from with `pip --no-index`: the image build needs no index.
#   scripts/container/wheels.sh [PYTHON]    (default .venv/bin/python, else python3)
# PYTHON must be CPython 3.11 like the image's, since grpcio, hiredis and orjson wheels are
# built per interpreter version.
# clawq is built from a clean copy of its sources, so no stale build/ tree leaks into it.
# async-timeout is added by hand: redis needs it on Python < 3.11.3 (Debian bookworm ships
# 3.11.2) and the environment marker drops it when the wheels are built on a newer 3.11.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
python="${1:-$root/.venv/bin/python}"
[ -x "$python" ] || python=python3
if ! "$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "wheels.sh: $python is not Python 3.11; pass a 3.11 interpreter" >&2
  exit 1
fi
out="$root/.containers/wheels"
src="$(mktemp -d "${TMPDIR:-/tmp}/clawq-src.XXXXXX")"
log="$src.log"
trap 'rm -rf "$src" "$log"' EXIT
tar -C "$root" --exclude=__pycache__ --exclude='*.egg-info' -c pyproject.toml client server \
  $(cd "$root" && ls README.md LICENSE 2>/dev/null) | tar -C "$src" -x
rm -rf "$out"
mkdir -p "$out"
if ! "$python" -m pip wheel --no-cache-dir --wheel-dir "$out" "$src[server]" \
  "async-timeout>=4.0.3" >"$log" 2>&1; then
  cat "$log" >&2
  exit 1
fi
echo "$(ls "$out" | wc -l) wheels in $out"
