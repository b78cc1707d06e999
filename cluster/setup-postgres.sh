#!/usr/bin/env bash
# Creates what the routers need on a PostgreSQL server: a role and two databases, one for
# Orthanc's index and storage (orthanc-postgresql), one for Courier's store. Run it once against
# your server, as a user allowed to create roles:
#   cluster/setup-postgres.sh [psql connection options...]      e.g. -h db.local -U postgres
# Give the role a password (ALTER ROLE courier PASSWORD '...') and pass it to the routers through
# Courier.Database.PasswordFile or PasswordEnv and PostgreSQL.Password (never in git).
set -euo pipefail
psql -v ON_ERROR_STOP=1 "$@" postgres <<'SQL'
SELECT 'CREATE ROLE courier LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'courier')\gexec
SELECT 'CREATE DATABASE orthanc OWNER courier' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'orthanc')\gexec
SELECT 'CREATE DATABASE courier OWNER courier' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'courier')\gexec
SQL
