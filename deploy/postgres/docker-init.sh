#!/usr/bin/env bash
#
# deploy/postgres/docker-init.sh: provisions the DM platform's roles, database and schemas in
# the official postgres image. docker-compose.yml mounts deploy/postgres/ at /doms and this file
# in /docker-entrypoint-initdb.d/, which the image runs once, when it initialises an empty data
# directory (as the postgres OS user, over the local socket).
#
# The service roles have no password: each logs in over TLS with its certificate
# (docker-compose.yml's pg_hba.conf, `cert map=doms`); provision removes a password a role had.
#
# Environment:
#   DOMS_DB                      database to create (default doms)
#   POSTGRES_USER                the image's superuser (default postgres)
#
# Idempotent. Run again on an existing volume (after an upgrade from a release whose roles had
# passwords, say; docs/operations.md):
#   docker-compose exec -u postgres postgres /docker-entrypoint-initdb.d/10-doms.sh
set -euo pipefail

provision=${DOMS_PROVISION:-/doms/provision}
db=${DOMS_DB:-doms}
admin=${POSTGRES_USER:-postgres}

# The init-time server listens on the unix socket only.
"$provision" "postgresql:///postgres?host=${PGHOST:-/var/run/postgresql}&user=$admin" "$db"
echo "docker-init: provisioned database $db and the five service roles (certificate logins)"
