#!/usr/bin/env bash
#
# deploy/postgres/docker-init.sh: provisions the DM platform's roles, database and schemas in
# the official postgres image. docker-compose.yml mounts deploy/postgres/ at /doms and this file
# in /docker-entrypoint-initdb.d/, which the image runs once, when it initialises an empty data
# directory (as the postgres OS user, over the local socket).
#
# Environment (each password VAR may instead be given as VAR_FILE, a file holding it, as
# docker-compose.yml does with its secrets; one trailing newline is dropped):
#   DOMS_DB                      database to create (default doms)
#   DOMS_INGEST_DB_PASSWORD      password of doms_ingest
#   DOMS_ROUTER_DB_PASSWORD      password of doms_router
#   DOMS_VAULT_DB_PASSWORD       password of doms_vault
#   DOMS_REAPER_DB_PASSWORD      password of doms_reaper
#   DOMS_AI_DB_PASSWORD          password of doms_ai
#   POSTGRES_USER                the image's superuser (default postgres)
#
# Idempotent. To apply changed passwords to an existing volume, run it again (docs/operations.md):
#   docker-compose exec -u postgres postgres /docker-entrypoint-initdb.d/10-doms.sh
set -euo pipefail

provision=${DOMS_PROVISION:-/doms/provision}
db=${DOMS_DB:-doms}
admin=${POSTGRES_USER:-postgres}

pwdir=$(mktemp -d)
trap 'rm -rf "$pwdir"' EXIT
chmod 0700 "$pwdir"

declare -A var_of=([doms_ingest]=DOMS_INGEST_DB_PASSWORD [doms_router]=DOMS_ROUTER_DB_PASSWORD
    [doms_vault]=DOMS_VAULT_DB_PASSWORD [doms_reaper]=DOMS_REAPER_DB_PASSWORD
    [doms_ai]=DOMS_AI_DB_PASSWORD)
for role in "${!var_of[@]}"; do
    var=${var_of[$role]}
    fvar=${var}_FILE
    pw=${!var:-}
    if [[ -n ${!fvar:-} ]]; then
        if [[ -n $pw ]]; then
            echo "docker-init: both $var and $fvar are set; set only one" >&2
            exit 1
        fi
        if [[ ! -r ${!fvar} ]]; then
            echo "docker-init: $fvar: cannot read ${!fvar}" >&2
            exit 1
        fi
        pw=$(<"${!fvar}")
    fi
    if [[ -z $pw ]]; then
        echo "docker-init: neither $var nor $fvar is set: every service role needs a password" >&2
        exit 1
    fi
    (umask 077 && printf '%s\n' "$pw" >"$pwdir/$role")
done
unset pw

# The init-time server listens on the unix socket only.
"$provision" "postgresql:///postgres?host=${PGHOST:-/var/run/postgresql}&user=$admin" "$db" \
    --passwords-dir "$pwdir"
echo "docker-init: provisioned database $db and the five service roles"
