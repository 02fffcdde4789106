# The producer image: supervisord runs the five programs from supervisord.conf in the foreground,
# everything logged to stdout (docker compose logs). Redis and PostgreSQL are other containers.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TICKSTOCKPL_VAR=/app/var \
    TICKSTOCKPL_PYTHON=python \
    TICKSTOCKPL_AUTOSTART=true \
    PROMETHEUS_MULTIPROC_DIR=/app/var/metrics \
    TICKSTOCKPL_METRICS_HOST=0.0.0.0

WORKDIR /app

# Dependencies first, so code changes do not reinstall them (the ta-lib wheel bundles its C library).
COPY pyproject.toml README.md ./
COPY tickstockpl ./tickstockpl
RUN pip install .

COPY supervisord.conf ./
COPY db ./db
COPY data ./data
COPY scripts ./scripts
COPY src ./src

RUN useradd --system --home-dir /app --shell /usr/sbin/nologin tickstockpl \
    && mkdir -p var/metrics var/supervisord.d \
    && chown -R tickstockpl: var
USER tickstockpl

EXPOSE 9108
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=4 \
    CMD ["tickstockpl", "heartbeat", "--check"]
# Multiprocess metric files belong to one run of the stack: wiped when it starts, never during it.
CMD ["sh", "-c", "rm -f \"$PROMETHEUS_MULTIPROC_DIR\"/*.db; exec supervisord -c /app/supervisord.conf"]
