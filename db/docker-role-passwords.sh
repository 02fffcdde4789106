#!/bin/sh
# Run once by the postgres image's entrypoint, after db/init.sql, when it initialises an empty data
# directory: db/init.sql creates the roles without passwords; give them the ones from .env.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v app_password="$TICKSTOCKPL_APP_PASSWORD" \
    -v producer_password="${TICKSTOCKPL_PRODUCER_PASSWORD:-$TICKSTOCKPL_APP_PASSWORD}" <<'SQL'
ALTER ROLE app_readwrite LOGIN PASSWORD :'app_password';
ALTER ROLE tickstockpl_producer LOGIN PASSWORD :'producer_password';
SQL
