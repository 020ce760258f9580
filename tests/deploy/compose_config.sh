#!/usr/bin/env bash
# compose_config.sh DOCKER_COMPOSE REPO: docker-compose.yml parses, names the services (the five
# daemons, postgres, nats, and domsctl under its profile), keeps every secret out of
# `environment:`, publishes nothing but webhook-ingest on 127.0.0.1, and refuses a missing
# required variable. No container engine runs here: `config` validates the file and its
# interpolation.
set -euo pipefail
compose=$1 repo=$2
cd "$repo"

passed=0 failed=0
ok() { passed=$((passed + 1)); }
fail() {
    failed=$((failed + 1))
    echo "FAIL: $*" >&2
}

# The required variables (what deploy/compose/init writes into .env), from a scratch directory
# so that an .env in the working tree plays no part.
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
export DOMS_SECRETS_DIR=$scratch/secrets META_APP_ID=app-123
unset META_APP_SECRET META_VERIFY_TOKEN INGEST_PUBLISH POSTGRES_IMAGE NATS_IMAGE DOMS_IMAGE
: >"$scratch/empty.env"
cfg() {
    "$compose" --project-directory "$repo" -f "$repo/docker-compose.yml" \
        --env-file "$scratch/empty.env" "$@"
}

if cfg config -q; then ok; else fail "docker-compose config refused the file"; fi

services=$(cfg config --services | sort | tr '\n' ' ')
want="ai-suggest conversation-router domsctl nats postgres retention-reaper token-vault webhook-ingest "
if [[ $services == "$want" ]]; then ok; else fail "services: got '$services', want '$want'"; fi

config=$(cfg config)

# Secrets go through NAME_FILE: no password, app secret, token or key in any environment.
if grep -nE '^\s+(META_APP_SECRET|META_APP_SECRET_PREVIOUS|META_VERIFY_TOKEN|OPENAI_API_KEY|GEMINI_API_KEY|ELEVENLABS_API_KEY|S3_SECRET_ACCESS_KEY|POSTGRES_PASSWORD|DOMS_[A-Z]+_DB_PASSWORD|NATS_JS_KEY|DOMS_NATS_JS_KEY):' <<<"$config"; then
    fail "a secret is set in environment: (use NAME_FILE and a secret file)"
else
    ok
fi

# DATABASE_URL is in environment: it must hold no password (certificate logins, verify-full).
if grep -nE '^\s+DATABASE_URL: ' <<<"$config" | grep -vE 'postgresql://[a-z_]+@postgres:5432/doms\?sslmode=verify-full&'; then
    fail "a DATABASE_URL in environment: has a password or no sslmode=verify-full"
else
    ok
fi

# Only webhook-ingest publishes a port, on 127.0.0.1 by default.
ports=$(awk '/^    ports:/ { p = 1; next } p && /^    - / { print; next } { p = 0 }' <<<"$config")
if [[ $ports == "    - 127.0.0.1:8080:8080/tcp" ]]; then ok; else
    fail "expected one published port, 127.0.0.1:8080:8080/tcp; got: $ports"
fi

# domsctl is started by `run` only.
if awk '/^  domsctl:/ { s = 1 } s && /^    profiles:/ { print; exit }' <<<"$config" | grep -q profiles; then
    ok
else
    fail "the domsctl service has no profile (up would start it)"
fi

# A missing required variable is refused, not silently empty.
for v in DOMS_SECRETS_DIR META_APP_ID; do
    if (unset "$v" && cfg config -q) 2>"$scratch/err"; then
        fail "compose accepted a missing $v"
    elif grep -q "$v\|deploy/compose/init" "$scratch/err"; then
        ok
    else
        fail "compose refused a missing $v without naming it: $(cat "$scratch/err")"
    fi
done

echo "$passed passed, $failed failed"
((failed == 0))
