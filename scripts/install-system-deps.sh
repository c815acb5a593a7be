#!/usr/bin/env bash
# Installs the system packages clawq uses when present: bubblewrap (the command sandbox),
# redis-server (started by the tests when no Redis is reachable) and podman with what it
# needs here (the container image tests build the image and run it).
set -euo pipefail
need=()
command -v bwrap >/dev/null 2>&1 || need+=(bubblewrap)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v podman >/dev/null 2>&1 || need+=(podman runc uidmap fuse-overlayfs slirp4netns)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
[ ${#need[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
$sudo apt-get update -qq || true
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
