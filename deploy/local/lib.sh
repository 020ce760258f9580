# shellcheck shell=bash
#
# deploy/local/lib.sh: shell helpers shared by deploy/local/up and tests/run.
#
# Source it from bash; every public function is prefixed `doms_`, private ones `doms__`.
# Safe under `set -euo pipefail`. Functions that fail return non-zero after printing one
# clear line on stderr (doms_install_deps exits 1 when it cannot install as non-root).
#
#   doms_install_deps [--with-test] [--with-fuzz] [--with-bench]
#   doms_free_port [EXCLUDED_PORT...]              prints a free TCP port on 127.0.0.1
#   doms_port_in_use PORT                          true when something listens on PORT
#   doms_pg_start DIR PORT|free trust|scram PKI    sets DOMS_PG_ADMIN_URL, DOMS_PG_BOUND_PORT
#   doms_pg_stop DIR
#   doms_nats_start DIR PORT|free                  sets DOMS_NATS_URL, DOMS_NATS_BOUND_PORT,
#                                                  DOMS_NATS_MONITOR_PORT
#   doms_nats_stop DIR
#   doms_provision ADMIN_URL DBNAME [PASSWORDS_DIR]
#   doms_pg_url_parse URL                          sets DOMS_URL_{SCHEME,USER,PASSWORD,HOSTPORT,DB,QUERY}
#   doms_pg_url_build USER PASSWORD HOSTPORT DB [QUERY]   prints a postgresql:// URL
#   doms_pg_url_with_db URL DB                     prints URL naming database DB instead
#   doms_pg_identity ROLE                          prints the PKI identity of a service role
#   doms_pg_tls_query PKI [IDENTITY]               prints libpq's verify-full parameters
#   doms_pg_service_url ROLE HOSTPORT DB PKI       prints a service role's certificate URL
#   doms_pg_url_passfile URL FILE                  prints URL with its password moved to FILE
#   doms_url_mask URL                              prints URL with its password as ***

DOMS_REPO=${DOMS_REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
DOMS_PG_BINDIR=${DOMS_PG_BINDIR:-/usr/lib/postgresql/15/bin}

doms__say() { printf '%s\n' "$*" >&2; }
doms__err() { printf 'error: %s\n' "$*" >&2; }

# ---------------------------------------------------------------------------------------------
# Packages
# ---------------------------------------------------------------------------------------------

# doms_install_deps [--with-test] [--with-fuzz] [--with-bench]
# Installs the Debian packages that are missing. As root: apt-get update + install, quietly
# (apt's output is shown only on failure). Not root: prints the exact install line and exits 1.
doms_install_deps() {
    local pkgs=(cmake gcc libc6-dev make pkg-config libevent-dev libevent-openssl-2.1-7 libnats-dev
        libpq-dev libsodium-dev libssl-dev libcurl4-openssl-dev libcjson-dev postgresql-15
        postgresql-client-15 nats-server openssl curl ca-certificates iproute2 util-linux)
    local arg
    for arg in "$@"; do
        case $arg in
        --with-test) pkgs+=(docker-compose chromium clang-format) ;;
        --with-fuzz) pkgs+=(clang libclang-rt-14-dev) ;;
        # npm for tests/bench/stack's Express receiver (a Node that came with its own npm will do).
        --with-bench)
            pkgs+=(wrk nginx-light)
            command -v npm >/dev/null || pkgs+=(nodejs npm)
            ;;
        *) doms__err "doms_install_deps: unknown option $arg"; return 2 ;;
        esac
    done

    # One dpkg-query for all: it prints the ones it knows and complains about the others.
    local installed missing=() p
    installed=$(dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' "${pkgs[@]}" 2>/dev/null |
        awk '$2 == "ii" { print $1 }') || true
    for p in "${pkgs[@]}"; do
        grep -qxF -- "$p" <<<"$installed" || missing+=("$p")
    done
    ((${#missing[@]} == 0)) && return 0

    if [[ $(id -u) != 0 ]]; then
        doms__err "missing Debian packages; install them with:"
        printf 'sudo apt-get install -y --no-install-recommends %s\n' "${missing[*]}" >&2
        exit 1
    fi

    doms__say "installing: ${missing[*]}"
    local log
    log=$(mktemp)
    # Another apt run (unattended upgrades, a colleague's script) may hold the locks: wait.
    local apt_opts=(-q -o DPkg::Lock::Timeout=600)
    if ! { apt-get "${apt_opts[@]}" update ||
        { sleep 10 && apt-get "${apt_opts[@]}" update; }; } >"$log" 2>&1 </dev/null ||
        ! DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" install -y \
            --no-install-recommends "${missing[@]}" >>"$log" 2>&1 </dev/null; then
        cat "$log" >&2
        rm -f "$log"
        doms__err "apt-get install failed"
        return 1
    fi
    rm -f "$log"
}

# ---------------------------------------------------------------------------------------------
# Ports
# ---------------------------------------------------------------------------------------------

# doms_port_in_use PORT: true when a TCP listener holds PORT (any address) or 127.0.0.1:PORT
# accepts a connection.
doms_port_in_use() {
    local port=$1
    if command -v ss >/dev/null 2>&1; then
        [[ -n $(ss -Htln "sport = :$port" 2>/dev/null) ]] && return 0
    fi
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    return 1
}

# doms_free_port [EXCLUDED...]: prints a TCP port in 20000-60999 on which nothing listens,
# outside the kernel's ephemeral range when possible, and not one of EXCLUDED (ports the caller
# picked but has not bound yet). A port is only free at the time of the check: callers that
# bind later retry with another port when the bind fails.
doms_free_port() {
    local lo=20000 hi=60999 elo=0 port i
    if [[ -r /proc/sys/net/ipv4/ip_local_port_range ]]; then
        read -r elo _ </proc/sys/net/ipv4/ip_local_port_range || true
    fi
    # Prefer the span below the ephemeral range when it is large enough.
    if ((elo > lo + 2000 && elo <= hi)); then hi=$((elo - 1)); fi
    for ((i = 0; i < 500; i++)); do
        port=$((lo + (RANDOM * 32768 + RANDOM) % (hi - lo + 1)))
        [[ " $* " == *" $port "* ]] && continue
        doms_port_in_use "$port" && continue
        printf '%s\n' "$port"
        return 0
    done
    doms__err "doms_free_port: no free TCP port found in $lo-$hi"
    return 1
}

# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------

# The state paths end up in postgres -o options and in nats.conf: keep them to plain characters.
doms__check_path() {
    if [[ ! $1 =~ ^[A-Za-z0-9_./+@-]+$ ]]; then
        doms__err "path '$1' contains characters this script does not handle (use [A-Za-z0-9_./+@-])"
        return 1
    fi
}

# doms__alive PID [COMM]: true when PID is a live, non-zombie process (named COMM if given).
doms__alive() {
    local pid=$1 stat
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat:0:1} != Z && ${stat:0:1} != X ]] || return 1
    if [[ -n ${2:-} ]]; then
        [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$2" ]] || return 1
    fi
}

# doms__secret_file FILE CMD...: creates FILE (0600) from CMD's output when it does not exist.
doms__secret_file() {
    local f=$1
    shift
    [[ -s $f ]] && return 0
    (
        umask 077
        "$@" >"$f.tmp.$$"
        mv -f "$f.tmp.$$" "$f"
    )
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------------------------

# Which OS user runs PostgreSQL: the `postgres` user when we are root (PostgreSQL refuses to run
# as root), the current user otherwise.
doms__pg_os_user() {
    if [[ $(id -u) == 0 ]]; then
        printf '%s\n' "${DOMS_PG_OS_USER:-postgres}"
    else
        id -un
    fi
}

# doms__pg_as DIR CMD...: runs CMD as the PostgreSQL OS user, from DIR (a cwd it can enter), in a
# session of its own so that a Ctrl-C on our terminal does not reach the server.
doms__pg_as() {
    local dir=$1
    shift
    if [[ $(id -u) == 0 ]]; then
        (cd "$dir" && setsid -w runuser -u "$(doms__pg_os_user)" -- "$@")
    else
        (cd "$dir" && setsid -w "$@")
    fi
}

# doms__pg_reachable_dir DIR USER: makes sure that USER can reach DIR, as PostgreSQL must.
# A checkout in /root (mode 0700) is the usual case where it cannot: then the data lives in
# /var/lib/doms/pg-<hash of DIR>, owned by USER, and DIR becomes a link to it, so that every
# path under DIR still works for us. A DIR that already holds files is never moved.
doms__pg_reachable_dir() {
    local dir=$1 user=$2 parent blocked='' p='' part home
    local -a parts
    [[ -L $dir ]] && return 0
    parent=$(mkdir -p "$(dirname "$dir")" && cd "$(dirname "$dir")" && pwd -P) || return 1
    # Checked from / down, so that a message names the directory that is in the way.
    IFS=/ read -ra parts <<<"${parent#/}"
    for part in "${parts[@]}"; do
        p+=/$part
        runuser -u "$user" -- test -x "$p" 2>/dev/null || {
            blocked=$p
            break
        }
    done
    [[ -z $blocked ]] && return 0
    if [[ -d $dir && -n $(ls -A "$dir" 2>/dev/null) ]]; then
        doms__err "PostgreSQL runs as OS user '$user', which cannot enter $blocked;" \
            "chmod o+x $blocked, or move $dir elsewhere"
        return 1
    fi
    home=/var/lib/doms/pg-$(printf '%s' "$parent/$(basename "$dir")" | sha256sum | cut -c1-16)
    # Explicit modes: the caller's umask (077 in up) must not lock the user out of the parent.
    install -d -m 0755 /var/lib/doms
    install -d -m 0700 -o "$user" -g "$(id -gn "$user")" "$home"
    chmod 0700 "$home"
    rmdir "$dir" 2>/dev/null || true
    ln -sfn "$home" "$dir"
    doms__say "PostgreSQL runs as '$user', which cannot enter $blocked: its data is in $home" \
        "($dir links to it)"
}

# The service roles, and the identity (certificate CN, deploy/pki's NAME) each logs in with.
DOMS_PG_ROLES="doms_ingest:webhook-ingest doms_router:conversation-router
doms_vault:token-vault doms_reaper:retention-reaper doms_ai:ai-suggest"

# doms__pg_tls_files DIR PKI USER METHOD: writes DIR/data's pg_hba.conf and pg_ident.conf, and
# copies the server's certificate, key and the CA bundle into DIR/data, owned by USER.
doms__pg_tls_files() {
    local dir=$1 pki=$2 user=$3 method=$4 data=$1/data roles='' pair own=()
    [[ $(id -u) == 0 ]] && own=(-o "$user" -g "$(id -gn "$user")")
    # PostgreSQL refuses a key that its group or others can read.
    install -m 0600 "${own[@]}" "$pki/postgres.key" "$data/server.key"
    install -m 0644 "${own[@]}" "$pki/postgres.crt" "$data/server.crt"
    install -m 0644 "${own[@]}" "$pki/ca.crt" "$data/ca.crt"
    {
        echo "# written by deploy/local/lib.sh at every start: the certificate's CN -> its role"
        for pair in $DOMS_PG_ROLES; do
            printf 'doms %s %s\n' "${pair#*:}" "${pair%%:*}"
            roles+=${roles:+,}${pair%%:*}
        done
    } >"$data/pg_ident.conf"
    # hostssl only: a plaintext TCP connection matches no line and is refused.
    printf '%s\n' "# written by deploy/local/lib.sh at every start: TLS only, no unix socket" \
        "hostssl all $roles 127.0.0.1/32 cert map=doms" \
        "hostssl all $roles ::1/128 cert map=doms" \
        "hostssl all doms_admin 127.0.0.1/32 $method" \
        "hostssl all doms_admin ::1/128 $method" >"$data/pg_hba.conf"
    chmod 0600 "$data/pg_hba.conf" "$data/pg_ident.conf"
    [[ $(id -u) == 0 ]] && chown "$user": "$data/pg_hba.conf" "$data/pg_ident.conf"
    return 0
}

# doms_pg_start DIR PORT MODE PKI
#   DIR   state directory (created); holds data/, postgres.log, the unix socket, admin-password
#   PORT  a TCP port, or `free` / empty for a free one (retried on a bind failure)
#   MODE  how the admin role doms_admin authenticates: trust (tests: no password) or scram
#         (scram-sha-256, admin password generated once into DIR/admin-password, 0600, and
#         given to clients through the password file DIR/pgpass, never in a URL)
#   PKI   deploy/pki's directory: the server presents postgres.crt, trusts ca.crt
# Runs initdb when DIR/data does not exist (superuser doms_admin, UTF8), starts the server on
# 127.0.0.1:PORT only and waits until pg_isready says it accepts connections.
# TLS only, 1.2 or higher: pg_hba.conf (rewritten at every start) has hostssl lines only, so a
# plaintext connection is refused, and no `local` line (nothing here uses the unix socket).
# The five service roles authenticate with their certificate alone (`cert`, the CN mapped to
# the role by pg_ident.conf's map doms); doms_admin with MODE, over TLS too. The certificate,
# its key (0600) and ca.crt are copied into data/ at every start, owned by the server's OS
# user: a renewed certificate takes effect at the next start.
# Sets and exports DOMS_PG_ADMIN_URL (postgresql://doms_admin@127.0.0.1:PORT/postgres with
# sslmode=verify-full, sslrootcert and, for scram, passfile) and DOMS_PG_BOUND_PORT; writes the
# URL into DIR/admin-url (0600).
doms_pg_start() {
    local dir=${1:?doms_pg_start DIR PORT MODE PKI} port=${2:-free} mode=${3:-trust}
    local pki=${4:?doms_pg_start DIR PORT MODE PKI: the PKI directory is missing}
    local bin=$DOMS_PG_BINDIR user auto=0 attempt f
    [[ $mode == trust || $mode == scram ]] || {
        doms__err "doms_pg_start: MODE must be trust or scram, not '$mode'"
        return 2
    }
    [[ -x $bin/initdb ]] || {
        doms__err "PostgreSQL 15 binaries not found in $bin"
        return 1
    }
    pki=$(cd "$pki" 2>/dev/null && pwd) || {
        doms__err "doms_pg_start: PKI directory '$4' not found (create it with deploy/pki)"
        return 1
    }
    for f in ca.crt postgres.crt postgres.key; do
        [[ -s $pki/$f ]] || {
            doms__err "doms_pg_start: $pki/$f is missing (deploy/pki $pki postgres)"
            return 1
        }
    done
    user=$(doms__pg_os_user)
    if [[ $(id -u) == 0 ]]; then
        id -u "$user" >/dev/null 2>&1 || {
            doms__err "OS user '$user' (to run PostgreSQL as) does not exist"
            return 1
        }
        doms__pg_reachable_dir "$dir" "$user" || return 1
    fi
    mkdir -p "$dir"
    # Physical path: DIR may be the link doms__pg_reachable_dir made.
    dir=$(cd "$dir" && pwd -P)
    doms__check_path "$dir" || return 1
    if [[ $(id -u) == 0 ]]; then
        chown "$user": "$dir"
        chmod 0700 "$dir"
    fi

    if doms__pg_as "$dir" "$bin/pg_ctl" status -D "$dir/data" >/dev/null 2>&1; then
        doms__err "a PostgreSQL server is already running on $dir/data"
        return 1
    fi

    if [[ ! -f $dir/data/PG_VERSION ]]; then
        rm -rf "$dir/data"
        local initargs=(-D "$dir/data" -U doms_admin -E UTF8 --no-locale --auth=trust)
        if [[ $mode == scram ]]; then
            doms__secret_file "$dir/admin-password" openssl rand -hex 24
            [[ $(id -u) == 0 ]] && chown "$user": "$dir/admin-password"
            initargs=(-D "$dir/data" -U doms_admin -E UTF8 --no-locale
                --auth=scram-sha-256 --pwfile="$dir/admin-password")
        fi
        if ! doms__pg_as "$dir" "$bin/initdb" "${initargs[@]}" >"$dir/initdb.log" 2>&1; then
            cat "$dir/initdb.log" >&2
            doms__err "initdb failed in $dir/data"
            return 1
        fi
    fi

    local method=trust
    if [[ $mode == scram ]]; then
        method=scram-sha-256
        [[ -s $dir/admin-password ]] || {
            doms__err "$dir/data exists but $dir/admin-password is missing; remove $dir to start over"
            return 1
        }
        # libpq's password file: the admin URL names it (passfile=), so that the password is
        # never in a URL, a command line or an environment.
        (
            umask 077
            pw=$(<"$dir/admin-password")
            printf '%s\n' "127.0.0.1:*:*:doms_admin:$pw" "localhost:*:*:doms_admin:$pw" \
                >"$dir/pgpass.tmp"
            mv -f "$dir/pgpass.tmp" "$dir/pgpass"
        )
    fi
    doms__pg_tls_files "$dir" "$pki" "$user" "$method" || return 1

    # The unix socket lives in DIR when its path fits in sun_path; TCP is what we use anyway.
    local sockdir=$dir
    ((${#dir} + 20 > 107)) && sockdir=

    [[ $port == free || -z $port ]] && auto=1
    for attempt in 1 2 3 4 5; do
        ((auto)) && port=$(doms_free_port)
        local logsize=0
        [[ -f $dir/postgres.log ]] && logsize=$(stat -c %s "$dir/postgres.log")
        local opts="-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories='$sockdir'"
        opts+=" -c max_connections=200 -c shared_buffers=128MB -c fsync=on"
        opts+=" -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key"
        opts+=" -c ssl_ca_file=ca.crt -c ssl_min_protocol_version=TLSv1.2"
        if doms__pg_as "$dir" "$bin/pg_ctl" start -D "$dir/data" -l "$dir/postgres.log" \
            -w -t 90 -s -o "$opts" >/dev/null 2>&1; then
            break
        fi
        local newlog
        newlog=$(tail -c +$((logsize + 1)) "$dir/postgres.log" 2>/dev/null || true)
        if ((auto)) && ((attempt < 5)) && grep -q 'could not bind\|could not create any TCP' <<<"$newlog"; then
            continue
        fi
        printf '%s\n' "$newlog" | tail -n 20 >&2
        doms__err "PostgreSQL did not start on port $port (log: $dir/postgres.log)"
        doms_pg_stop "$dir" || true
        return 1
    done

    local i
    for ((i = 0; i < 300; i++)); do
        "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" -d postgres && break
        sleep 0.2
    done
    "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" -d postgres || {
        doms__err "PostgreSQL started but is not ready on port $port (log: $dir/postgres.log)"
        return 1
    }

    DOMS_PG_BOUND_PORT=$port
    local query
    query=$(doms_pg_tls_query "$pki")
    [[ $mode == scram ]] && query+="&passfile=$(doms__urlenc "$dir/pgpass")"
    DOMS_PG_ADMIN_URL=$(doms_pg_url_build doms_admin '' "127.0.0.1:$port" postgres "$query")
    export DOMS_PG_BOUND_PORT DOMS_PG_ADMIN_URL
    (umask 077 && printf '%s\n' "$DOMS_PG_ADMIN_URL" >"$dir/admin-url")
    printf '%s\n' "$port" >"$dir/port"
}

# doms_pg_stop DIR: stops the server of DIR/data (fast shutdown, then immediate). Idempotent.
doms_pg_stop() {
    local dir=${1:?doms_pg_stop DIR} bin=$DOMS_PG_BINDIR
    [[ -f $dir/data/postmaster.pid ]] || return 0
    dir=$(cd "$dir" && pwd -P)
    doms__pg_as "$dir" "$bin/pg_ctl" status -D "$dir/data" >/dev/null 2>&1 || return 0
    doms__pg_as "$dir" "$bin/pg_ctl" stop -D "$dir/data" -m fast -w -t 60 -s >/dev/null 2>&1 ||
        doms__pg_as "$dir" "$bin/pg_ctl" stop -D "$dir/data" -m immediate -w -t 30 -s >/dev/null 2>&1 ||
        {
            doms__err "could not stop PostgreSQL in $dir/data"
            return 1
        }
}

# doms_provision ADMIN_URL DBNAME [PASSWORDS_DIR]: runs deploy/postgres/provision.
doms_provision() {
    local url=${1:?doms_provision ADMIN_URL DBNAME [PASSWORDS_DIR]} db=${2:?DBNAME}
    if [[ -n ${3:-} ]]; then
        "$DOMS_REPO/deploy/postgres/provision" "$url" "$db" --passwords-dir "$3"
    else
        "$DOMS_REPO/deploy/postgres/provision" "$url" "$db"
    fi
}

# doms_pg_url_parse URL: splits postgres[ql]://[user[:password]@]hostport[/db][?query] into
# DOMS_URL_SCHEME, DOMS_URL_USER, DOMS_URL_PASSWORD, DOMS_URL_HOSTPORT, DOMS_URL_DB and
# DOMS_URL_QUERY (percent-encoding is kept as is). Returns 1 for anything else.
# shellcheck disable=SC2034 # the DOMS_URL_* variables are this function's output
doms_pg_url_parse() {
    local re='^(postgres|postgresql)://(([^:@/]*)(:([^@/]*))?@)?([^/?]*)(/([^?]*))?(\?(.*))?$'
    [[ $1 =~ $re ]] || return 1
    DOMS_URL_SCHEME=${BASH_REMATCH[1]}
    DOMS_URL_USER=${BASH_REMATCH[3]}
    DOMS_URL_PASSWORD=${BASH_REMATCH[5]}
    DOMS_URL_HOSTPORT=${BASH_REMATCH[6]}
    DOMS_URL_DB=${BASH_REMATCH[8]}
    DOMS_URL_QUERY=${BASH_REMATCH[10]}
}

# doms_pg_url_build USER PASSWORD HOSTPORT DB [QUERY]: prints the URL (PASSWORD may be empty).
doms_pg_url_build() {
    local userinfo=''
    [[ -n $1 ]] && userinfo="$1${2:+:$2}@"
    printf 'postgresql://%s%s/%s%s\n' "$userinfo" "$3" "$4" "${5:+?$5}"
}

# doms__urlenc TEXT: TEXT percent-encoded for a URL's query (unreserved characters and / kept).
doms__urlenc() {
    local s=$1 out='' c i
    for ((i = 0; i < ${#s}; i++)); do
        c=${s:i:1}
        case $c in
        [A-Za-z0-9._~/-]) out+=$c ;;
        *) out+=$(printf '%%%02X' "'$c") ;;
        esac
    done
    printf '%s\n' "$out"
}

# doms_pg_url_with_db URL DB: prints URL with its database replaced by DB (query kept).
doms_pg_url_with_db() {
    doms_pg_url_parse "$1" || return 1
    doms_pg_url_build "$DOMS_URL_USER" "$DOMS_URL_PASSWORD" "$DOMS_URL_HOSTPORT" "$2" "$DOMS_URL_QUERY"
}

# doms_pg_identity ROLE: prints the identity whose certificate logs in as service role ROLE
# (doms_router -> conversation-router); returns 1 for any other role.
doms_pg_identity() {
    local pair
    for pair in $DOMS_PG_ROLES; do
        [[ ${pair%%:*} == "$1" ]] && { printf '%s\n' "${pair#*:}"; return 0; }
    done
    return 1
}

# doms_pg_tls_query PKI [IDENTITY]: prints the libpq URL parameters that check the server's
# certificate against PKI/ca.crt and its name (verify-full) and, with IDENTITY, present that
# identity's certificate and key.
doms_pg_tls_query() {
    local pki q
    pki=$(cd "$1" && pwd) || return 1
    q="sslmode=verify-full&sslrootcert=$(doms__urlenc "$pki/ca.crt")"
    if [[ -n ${2:-} ]]; then
        q+="&sslcert=$(doms__urlenc "$pki/$2.crt")&sslkey=$(doms__urlenc "$pki/$2.key")"
    fi
    printf '%s\n' "$q"
}

# doms_pg_service_url ROLE HOSTPORT DB PKI: prints the URL with which service role ROLE logs in
# with its identity's certificate (no password) on the server at HOSTPORT, database DB.
doms_pg_service_url() {
    local id
    id=$(doms_pg_identity "$1") || {
        doms__err "doms_pg_service_url: '$1' is not a service role"
        return 1
    }
    doms_pg_url_build "$1" '' "$2" "$3" "$(doms_pg_tls_query "$4" "$id")"
}

# doms_pg_url_passfile URL FILE: prints URL without its password, which goes into FILE (libpq's
# password file format, 0600, rewritten) that the URL then names (passfile=). A URL without a
# password is printed as it is. The URL can then be shown and passed on a command line.
doms_pg_url_passfile() {
    local url=$1 file=$2 pw user q path
    doms_pg_url_parse "$url" || return 1
    [[ -n $DOMS_URL_PASSWORD ]] || { printf '%s\n' "$url"; return 0; }
    # The URL's percent-encoding undone; the password file's own escapes (\ and :) done.
    pw=$(printf '%b' "${DOMS_URL_PASSWORD//%/\\x}")
    pw=${pw//\\/\\\\}
    user=$(printf '%b' "${DOMS_URL_USER//%/\\x}")
    user=${user//\\/\\\\}
    (
        umask 077
        printf '*:*:*:%s:%s\n' "${user//:/\\:}" "${pw//:/\\:}" >"$file.tmp"
        mv -f "$file.tmp" "$file"
    )
    path=$(cd "$(dirname "$file")" && pwd)/$(basename "$file")
    q=$DOMS_URL_QUERY${DOMS_URL_QUERY:+&}passfile=$(doms__urlenc "$path")
    doms_pg_url_build "$DOMS_URL_USER" '' "$DOMS_URL_HOSTPORT" "$DOMS_URL_DB" "$q"
}

# doms_url_mask URL: prints URL with the password of its user information, if any, as ***.
doms_url_mask() {
    sed -E 's#^([A-Za-z][A-Za-z0-9+.-]*://[^:@/?]*):[^@/?]*@#\1:***@#' <<<"$1"
}

# ---------------------------------------------------------------------------------------------
# NATS
# ---------------------------------------------------------------------------------------------

# doms_nats_start DIR PORT [PKI [ALLOW_ALL...]]
#   DIR   state directory (created): nats.conf, js/ (JetStream store, encrypted with the key in
#         DIR/js.key, generated once, 0600), nats.log, nats.pid
#   PORT  a TCP port, or `free` / empty for a free one (retried on a bind failure)
#   PKI   deploy/pki's directory (nats-server.crt/.key, ca.crt): TLS only, a client certificate
#         required and mapped to its identity, whose permissions DIR/authorization.conf gives
#         (deploy/nats/authorization from proto/permissions.tsv). Without it: plaintext, no
#         authorization (docker-compose's way, for now).
#   ALLOW_ALL  users allowed every subject (tests only: doms-test)
# Writes DIR/nats.conf from deploy/nats/nats.conf, starts nats-server (detached, its own
# session) on 127.0.0.1:PORT with its monitoring port on another free 127.0.0.1 port, and waits
# until /healthz?js-enabled-only=true answers 200.
# Sets and exports DOMS_NATS_URL (nats://127.0.0.1:PORT, tls:// with a PKI), DOMS_NATS_BOUND_PORT and
# DOMS_NATS_MONITOR_PORT. With DOMS_NATS_PROF_PORT set, nats-server also serves Go's profiler
# (/debug/pprof/) on 127.0.0.1 at that port: for profiling the benchmarks, never in a deployment.
doms_nats_start() {
    local dir=${1:?doms_nats_start DIR PORT} port=${2:-free} auto=0 mon attempt
    local tmpl=$DOMS_REPO/deploy/nats/nats.conf
    local pki=${3:-} scheme=nats extra=()
    [[ $# -gt 3 ]] && extra=("${@:4}")
    command -v nats-server >/dev/null || {
        doms__err "nats-server is not installed"
        return 1
    }
    mkdir -p "$dir/js"
    dir=$(cd "$dir" && pwd)
    doms__check_path "$dir" || return 1
    chmod 0700 "$dir"
    if [[ -f $dir/nats.pid ]] && doms__alive "$(<"$dir/nats.pid")" nats-server; then
        doms__err "a nats-server is already running for $dir (pid $(<"$dir/nats.pid"))"
        return 1
    fi
    doms__secret_file "$dir/js.key" openssl rand -hex 32
    if [[ -n $pki ]]; then
        pki=$(cd "$pki" && pwd) || return 1
        doms__check_path "$pki" || return 1
        local a allow=()
        for a in "${extra[@]}"; do allow+=(--allow-all "$a"); done
        "$DOMS_REPO/deploy/nats/authorization" "${allow[@]}" "$DOMS_REPO/proto/permissions.tsv" \
            >"$dir/authorization.conf" || return 1
        scheme=tls
    fi

    [[ $port == free || -z $port ]] && auto=1
    for attempt in 1 2 3 4 5; do
        ((auto)) && port=$(doms_free_port)
        mon=$(doms_free_port "$port")
        (
            umask 077
            sed -e "s|\$DOMS_NATS_LISTEN|\"127.0.0.1:$port\"|" \
                -e "s|\$DOMS_NATS_HTTP|\"127.0.0.1:$mon\"|" \
                -e "s|\$DOMS_NATS_STORE_DIR|\"$dir/js\"|" \
                -e "s|\$DOMS_NATS_JS_KEY|\"$(<"$dir/js.key")\"|" \
                "$tmpl" >"$dir/nats.conf"
            if [[ -n ${DOMS_NATS_PROF_PORT:-} ]]; then
                echo "prof_port: $DOMS_NATS_PROF_PORT" >>"$dir/nats.conf"
            fi
            if [[ -n $pki ]]; then
                sed -e "s|\$DOMS_NATS_TLS_CERT|\"$pki/nats-server.crt\"|" \
                    -e "s|\$DOMS_NATS_TLS_KEY|\"$pki/nats-server.key\"|" \
                    -e "s|\$DOMS_NATS_TLS_CA|\"$pki/ca.crt\"|" \
                    "$DOMS_REPO/deploy/nats/tls.conf" >>"$dir/nats.conf"
            fi
        )
        rm -f "$dir/nats.pid"
        local logsize=0
        [[ -f $dir/nats.log ]] && logsize=$(stat -c %s "$dir/nats.log")
        setsid -f nats-server -c "$dir/nats.conf" -P "$dir/nats.pid" \
            >>"$dir/nats.log" 2>&1 </dev/null

        local i ok=0 pid=
        for ((i = 0; i < 150; i++)); do
            [[ -z $pid && -s $dir/nats.pid ]] && pid=$(<"$dir/nats.pid")
            if [[ -n $pid ]] && ! doms__alive "$pid"; then break; fi
            if curl -fsS -o /dev/null --max-time 2 \
                "http://127.0.0.1:$mon/healthz?js-enabled-only=true" 2>/dev/null; then
                ok=1
                break
            fi
            sleep 0.2
        done
        if ((ok)); then
            DOMS_NATS_BOUND_PORT=$port
            DOMS_NATS_MONITOR_PORT=$mon
            DOMS_NATS_URL="$scheme://127.0.0.1:$port"
            export DOMS_NATS_BOUND_PORT DOMS_NATS_MONITOR_PORT DOMS_NATS_URL
            return 0
        fi
        doms_nats_stop "$dir" || true
        local newlog
        newlog=$(tail -c +$((logsize + 1)) "$dir/nats.log" 2>/dev/null || true)
        # A port taken between the check and the bind: retry with other ports (the client port
        # only when it was ours to choose).
        if ((attempt < 5)) && grep -qi 'address already in use' <<<"$newlog"; then
            if ((auto)) || [[ $newlog == *"127.0.0.1:$mon"* ]]; then continue; fi
        fi
        printf '%s\n' "$newlog" | tail -n 20 >&2
        doms__err "nats-server did not start on port $port (log: $dir/nats.log)"
        return 1
    done
}

# doms_nats_stop DIR: stops the nats-server of DIR (SIGTERM, SIGKILL after 15 s). Idempotent.
doms_nats_stop() {
    local dir=${1:?doms_nats_stop DIR} pid i
    [[ -f $dir/nats.pid ]] || return 0
    pid=$(<"$dir/nats.pid")
    if doms__alive "$pid" nats-server; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 75; i++)); do
            doms__alive "$pid" || break
            sleep 0.2
        done
        if doms__alive "$pid"; then
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.2
        fi
    fi
    rm -f "$dir/nats.pid"
}
