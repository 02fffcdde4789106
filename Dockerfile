# The producer image: supervisord runs the five programs from supervisord.conf in the foreground as
# an unprivileged user, everything logged to stdout (docker compose logs). Redis and PostgreSQL are
# other containers. No secret is in the image: they come from the environment at run time.
# (No `# syntax=` line: the legacy builder, the only one on some engines, would try to pull it.)

# --- build: the package and its dependencies in a virtualenv ------------------------------------
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# docker/wheels/ holds only a README for users (pip then installs from PyPI); `make offline-images`
# fills it with wheels built on the host, for machines where pip cannot reach PyPI from a container.
COPY docker/wheels/ /wheels/
COPY pyproject.toml README.md ./
COPY tickstockpl ./tickstockpl
RUN python -m venv /opt/tickstockpl \
    && if ls /wheels/*.whl >/dev/null 2>&1; then \
         /opt/tickstockpl/bin/pip install --no-index --find-links /wheels . ; \
       else \
         /opt/tickstockpl/bin/pip install . ; \
       fi \
    && find /opt/tickstockpl -name __pycache__ -prune -exec rm -rf '{}' +

# --- run -----------------------------------------------------------------------------------------
FROM python:3.11-slim
ENV PATH=/opt/tickstockpl/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TICKSTOCKPL_VAR=/app/var \
    TICKSTOCKPL_PYTHON=/opt/tickstockpl/bin/python \
    TICKSTOCKPL_AUTOSTART=true \
    TICKSTOCKPL_DETECTOR_SHARDS=1 \
    TICKSTOCKPL_SHARD_FIRST=0 \
    TICKSTOCKPL_SERVICE_USER=tickstockpl \
    TICKSTOCKPL_METRICS_HOST=0.0.0.0
WORKDIR /app
COPY --from=build /opt/tickstockpl /opt/tickstockpl
COPY supervisord.conf ./
COPY db ./db
COPY data ./data
COPY scripts ./scripts
COPY src ./src
RUN useradd --system --home-dir /app --shell /usr/sbin/nologin tickstockpl \
    && mkdir -p var/supervisord.d \
    && chown -R tickstockpl: var
USER tickstockpl

EXPOSE 9108
# docker stop sends SIGTERM to supervisord (PID 1), which stops every program within its
# stopwaitsecs (30 s: a relay batch in flight finishes); compose's stop_grace_period is 45 s.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=4 \
    CMD ["tickstockpl", "heartbeat", "--check"]
CMD ["supervisord", "-c", "/app/supervisord.conf"]
