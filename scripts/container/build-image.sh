#!/usr/bin/env bash
# Builds the clawq image: wheels into the build context, then podman (preferred) or docker.
#   scripts/container/build-image.sh [TAG]          (default localhost/clawq:latest)
# BASE picks the base image. Unset with podman, the base is made locally with debootstrap
# (base-image.sh), for machines without a registry; set BASE=python:3.11-slim-bookworm to
# pull it instead. With docker, unset BASE means the Dockerfile's default.
# podman keeps its storage under .containers/ unless CONTAINERS_CONF is already set.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
tag="${1:-localhost/clawq:latest}"
"$here/wheels.sh"
args=(--tag "$tag")
if command -v podman >/dev/null 2>&1; then
  [ -n "${CONTAINERS_CONF:-}" ] || eval "$("$here/podman-env.sh")"
  if [ -z "${BASE:-}" ]; then
    BASE=localhost/bookworm-py:local
    "$here/base-image.sh" "$BASE"
  fi
  # docker format: OCI images cannot carry a HEALTHCHECK.
  engine=(podman build --format docker --pull=never)
  [[ "$BASE" == localhost/* ]] || engine=(podman build --format docker)
else
  engine=(docker build)
fi
[ -z "${BASE:-}" ] || args+=(--build-arg "BASE=$BASE")
start=$(date +%s)
"${engine[@]}" "${args[@]}" "$root"
echo "built $tag in $(($(date +%s) - start)) s"
"${engine[0]}" image inspect "$tag" --format '{{.Size}}' \
  | awk '{ printf "image size: %.0f MB\n", $1 / 1e6 }'
