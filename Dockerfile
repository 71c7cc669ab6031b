# syntax=docker/dockerfile:1
# The control plane in production mode: daphne serves the UI, the API and websockets; the same image runs the
# edge role (scripts/edge: uvicorn with uvloop + httptools + websockets-sansio, all in requirements.txt), the
# Celery worker and beat (see docker-compose.yml). Reviewed, not built here: the development machines have no
# Docker engine.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
COPY requirements.txt /tmp/requirements.txt
# Every pinned requirement ships manylinux wheels (psycopg[binary], cryptography), so no compiler is needed.
RUN /opt/venv/bin/pip install -r /tmp/requirements.txt

FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DJANGO_SETTINGS_MODULE=controlplane.settings \
    CONTROLPLANE_MODE=production \
    DATA_DIR=/data \
    PORT=8000
RUN groupadd --system --gid 10001 controlplane \
    && useradd --system --uid 10001 --gid controlplane --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin controlplane \
    && mkdir -p /data /app \
    && chown controlplane:controlplane /data
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY --chown=root:root . /app
# Static files are collected into the image (served by WhiteNoise). Production settings insist on secrets and a
# database, so this build-only step gets throwaway ones that never reach the running container.
RUN SECRET_KEY=build-only DATA_ENCRYPTION_KEY=build-only DATABASE_URL=sqlite:////tmp/build.sqlite3 \
    python manage.py collectstatic --no-input -v0 \
    && rm -f /tmp/build.sqlite3 \
    && python -m compileall -q controlplane tunnels access certificates edge connector
USER controlplane:controlplane
VOLUME ["/data"]
# 8000: web (daphne); 8080: the edge (scripts/edge, EDGE_PORT).
EXPOSE 8000 8080
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 CMD ["python", "scripts/healthcheck"]
# backlog=4096: daphne's default of 50 drops connections when every connector reconnects at once.
# --websocket_timeout -1: daphne closes every websocket after 24 h by default (connectors, status pages, peer links).
CMD ["sh", "-c", "exec daphne --websocket_timeout -1 -e tcp:port=${PORT}:interface=0.0.0.0:backlog=4096 controlplane.asgi:application"]
