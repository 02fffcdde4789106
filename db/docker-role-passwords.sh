#!/bin/sh
# Run once by the postgres image's entrypoint, after db/init.sql, when it initialises an empty data
# directory: db/init.sql creates the roles without passwords; give them the ones from .env
# (`make up` generates them). app_readwrite is the consumer's role; the other three are the
# producer's least-privilege roles (docs/stack.md): audit writer, reader, backtester.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v app_password="$TICKSTOCKPL_APP_PASSWORD" \
    -v audit_password="$TICKSTOCKPL_AUDIT_PASSWORD" \
    -v read_password="$TICKSTOCKPL_READ_PASSWORD" \
    -v backtest_password="$TICKSTOCKPL_BACKTEST_PASSWORD" <<'SQL'
ALTER ROLE app_readwrite LOGIN PASSWORD :'app_password';
ALTER ROLE tickstockpl_producer LOGIN PASSWORD :'audit_password';
ALTER ROLE tickstockpl_reader LOGIN PASSWORD :'read_password';
ALTER ROLE tickstockpl_backtester LOGIN PASSWORD :'backtest_password';
SQL
