#!/bin/sh
# Run by the postgres image once, when it creates the data directory: the role pgpulse
# connects as (pg_monitor, nothing else) and pg_stat_statements for the Queries dashboard.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "${POSTGRES_DB:-$POSTGRES_USER}" \
  -v password="$(head -n 1 /run/secrets/pgpulse_password)" <<'SQL'
CREATE ROLE pgpulse LOGIN CONNECTION LIMIT 3 PASSWORD :'password';
GRANT pg_monitor TO pgpulse;
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
SQL
