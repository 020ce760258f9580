#!/usr/bin/env bash
# The official postgres image's entrypoint contract, in brief (see the Dockerfile beside it).
set -Eeuo pipefail

# file_env VAR: VAR or VAR_FILE (the file's content, trailing newlines dropped), not both.
file_env() {
    local var=$1 fvar=${1}_FILE
    if [[ -n ${!var:-} && -n ${!fvar:-} ]]; then
        echo "error: both $var and $fvar are set (but are exclusive)" >&2
        exit 1
    fi
    if [[ -n ${!fvar:-} ]]; then
        export "$var=$(<"${!fvar}")"
    fi
    unset "$fvar"
}

if [[ ${1:-} == -* ]]; then set -- postgres "$@"; fi

if [[ ${1:-} == postgres ]]; then
    if [[ $(id -u) == 0 ]]; then
        mkdir -p "$PGDATA" /var/run/postgresql
        chown postgres:postgres "$PGDATA" /var/run/postgresql
        chmod 0700 "$PGDATA"
        chmod 3777 /var/run/postgresql
        exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
    fi

    file_env POSTGRES_PASSWORD
    export POSTGRES_USER=${POSTGRES_USER:-postgres}
    export POSTGRES_DB=${POSTGRES_DB:-$POSTGRES_USER}

    if [[ ! -s $PGDATA/PG_VERSION ]]; then
        if [[ -z ${POSTGRES_PASSWORD:-} ]]; then
            echo "error: database is uninitialized and superuser password is not specified" \
                "(POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE)" >&2
            exit 1
        fi
        # shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is a list of options
        initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
            ${POSTGRES_INITDB_ARGS:---encoding=UTF8 --locale=C.UTF-8} -D "$PGDATA"
        printf '\nhost all all all scram-sha-256\n' >>"$PGDATA/pg_hba.conf"

        # The init-time server: the command's options (hba_file, ssl, ...), as the official
        # image gives them, and the unix socket only, so nothing outside sees it
        # half-initialised.
        pg_ctl -D "$PGDATA" -o "$(printf '%q ' "${@:2}")-c listen_addresses='' -p 5432" -w start
        export PGUSER=$POSTGRES_USER PGPASSWORD=$POSTGRES_PASSWORD PGHOST=/var/run/postgresql
        if [[ $POSTGRES_DB != postgres ]]; then
            psql -v ON_ERROR_STOP=1 -X -q -d postgres -v db="$POSTGRES_DB" \
                <<<'CREATE DATABASE :"db";'
        fi
        for f in /docker-entrypoint-initdb.d/*; do
            case $f in
            *.sh)
                if [[ -x $f ]]; then
                    echo "docker-entrypoint: running $f"
                    "$f"
                else
                    echo "docker-entrypoint: sourcing $f"
                    # shellcheck disable=SC1090
                    . "$f"
                fi
                ;;
            *.sql)
                echo "docker-entrypoint: running $f"
                psql -v ON_ERROR_STOP=1 -X -q -d "$POSTGRES_DB" -f "$f"
                ;;
            *) [[ -e $f ]] && echo "docker-entrypoint: ignoring $f" ;;
            esac
        done
        unset PGPASSWORD
        pg_ctl -D "$PGDATA" -m fast -w stop
        echo "docker-entrypoint: init process complete; ready for start up"
    fi
    shift
    exec postgres "$@"
fi

exec "$@"
