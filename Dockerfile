# clawq server and worker image: non-root, health-checked, installed from prebuilt wheels.
#
# Build (`make image` does all three steps):
#   scripts/container/wheels.sh                 # clawq[server] + deps -> .containers/wheels/
#   docker build -t clawq .                      # with a registry: python:3.11-slim-bookworm
#   podman build --format docker --build-arg BASE=localhost/bookworm-py:local -t clawq .
# Without a registry, scripts/container/base-image.sh makes localhost/bookworm-py:local with
# debootstrap. podman needs --format docker: the OCI image format has no HEALTHCHECK.
#
# Run (the port is published on loopback only; the default command has no TLS and no auth):
#   podman run -d -p 127.0.0.1:50051:50051 -v clawq-data:/srv/clawq/data clawq
ARG BASE=python:3.11-slim-bookworm

# A virtualenv works the same on Debian's python3 and on the python images, and keeps pip
# away from the system site-packages. --no-index: everything comes from the build context.
# Installed in a stage of its own so that the wheels leave no layer in the image; COPY (not
# a bind mount) so that changed wheels invalidate the build cache.
FROM ${BASE} AS install
COPY .containers/wheels/ /tmp/wheels/
RUN python3 -m venv /opt/clawq \
    && /opt/clawq/bin/pip install --no-cache-dir --no-index --find-links /tmp/wheels \
      "clawq[server]" async-timeout \
    && /opt/clawq/bin/pip uninstall --yes --quiet pip setuptools \
    && /opt/clawq/bin/clawq --help >/dev/null

FROM ${BASE}

# bubblewrap is clawq's command sandbox (no network, read-only system). It is installed when
# the base can reach an apt mirror; otherwise the build goes on and `clawq serve` falls back
# to the "subreaper" sandbox (rlimits and process-group kills, no namespaces); its startup line
# names the active sandbox. Even when installed, bwrap cannot mount a fresh /proc under the
# runtime's masked /proc paths, so by default the container runs "subreaper" too. With
# `--security-opt systempaths=unconfined` (rootful podman 4.3, checked; Docker may also need
# seccomp=unconfined for user namespaces) clawq selects "bwrap": stronger isolation of each
# command, traded for a less masked /proc in the container itself.
ARG WITH_BWRAP=auto
# The version is whatever the base's Debian release ships; there is nothing to pin it to.
# hadolint ignore=DL3008
RUN if [ "$WITH_BWRAP" != "no" ] \
      && apt-get update -o Acquire::Retries=0 -o Acquire::http::Timeout=10 >/dev/null 2>&1; then \
      apt-get install -y --no-install-recommends bubblewrap; \
    else \
      echo "bubblewrap not installed: clawq will use the subreaper sandbox"; \
    fi \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb

COPY --from=install /opt/clawq /opt/clawq
COPY scripts/healthcheck.py /opt/clawq/healthcheck.py

# A fixed uid/gid, so bind-mounted data folders can be chowned on the host before mounting.
RUN groupadd --gid 10001 clawq \
    && useradd --no-log-init --uid 10001 --gid 10001 --home-dir /srv/clawq --shell /usr/sbin/nologin clawq \
    && mkdir -p /srv/clawq/data /srv/clawq/workspace \
    && chown -R 10001:10001 /srv/clawq

ENV PATH=/opt/clawq/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /srv/clawq
USER 10001:10001
# data: the SQLite database and the audit log; workspace: the files tools may touch.
VOLUME ["/srv/clawq/data", "/srv/clawq/workspace"]
EXPOSE 50051

HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/opt/clawq/bin/python", "/opt/clawq/healthcheck.py"]

# clawq is PID 1: it installs SIGTERM and SIGINT handlers and drains on either, so `docker
# stop` ends it cleanly within the grace period.
STOPSIGNAL SIGTERM
ENTRYPOINT ["clawq"]
# --insecure: a container must listen on 0.0.0.0 to be reachable at all, and clawq refuses a
# non-loopback bind without TLS and tokens unless told so. The default is for trying clawq
# out with the port published on 127.0.0.1; for anything shared, pass --config with TLS and
# token principals (see compose.yaml).
CMD ["serve", "--listen", "0.0.0.0:50051", "--insecure", \
     "--db", "/srv/clawq/data/clawq.db", "--audit-log", "/srv/clawq/data/audit.jsonl", \
     "--root", "/srv/clawq/workspace"]
