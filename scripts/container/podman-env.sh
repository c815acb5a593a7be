#!/usr/bin/env bash
# Writes a containers.conf and storage.conf that keep podman's images and containers under
# the project's git-ignored .containers/ folder, and prints the exports that select them:
#   eval "$(scripts/container/podman-env.sh)"
# containers.conf: crun fails on this kernel's hybrid cgroups ("cgroups in hybrid mode not
# supported"), so runc with the cgroupfs manager; default ulimits above the hard limit fail
# with "setrlimit RLIMIT_NOFILE: Operation not permitted"; no journald, so a file event log.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
dir="${CLAWQ_CONTAINERS_DIR:-$root/.containers}"
mkdir -p "$dir/storage" "$dir/run"
cat >"$dir/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$dir/events.log"
CONF
cat >"$dir/storage.conf" <<CONF
[storage]
driver = "overlay"
graphroot = "$dir/storage"
runroot = "$dir/run"
CONF
echo "export CONTAINERS_CONF='$dir/containers.conf'"
echo "export CONTAINERS_STORAGE_CONF='$dir/storage.conf'"
