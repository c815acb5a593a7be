#!/usr/bin/env bash
# Builds a minimal Debian bookworm image with Python 3.11 for machines that cannot pull from
# a registry: debootstrap a minbase root filesystem, then `podman import` it. Does nothing
# when the tag already exists (the root filesystem takes ~40 s to make).
#   scripts/container/base-image.sh [TAG]      (default localhost/bookworm-py:local)
# Needs root (debootstrap) and a reachable Debian mirror (MIRROR, default deb.debian.org).
set -euo pipefail
tag="${1:-localhost/bookworm-py:local}"
mirror="${MIRROR:-http://deb.debian.org/debian}"
if podman image exists "$tag"; then
  echo "base image $tag exists"
  exit 0
fi
rootfs="$(mktemp -d "${TMPDIR:-/tmp}/clawq-rootfs.XXXXXX")"
trap 'rm -rf "$rootfs"' EXIT
debootstrap --variant=minbase --include=python3,python3-venv bookworm "$rootfs" "$mirror" >/dev/null
# The image gets no apt lists or caches; the package index is of no use without a mirror.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb
tar -C "$rootfs" -c . | podman import --quiet --change 'CMD ["/bin/bash"]' - "$tag" >/dev/null
echo "base image $tag built"
