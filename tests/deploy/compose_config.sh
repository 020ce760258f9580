#!/usr/bin/env bash
# compose_config.sh DOCKER_COMPOSE REPO: docker-compose.yml parses and names the five daemons.
# No container engine runs here; `config` validates the file and its interpolation.
set -euo pipefail
compose=$1 repo=$2
export DOMS_INGEST_DB_PASSWORD=x DOMS_ROUTER_DB_PASSWORD=x DOMS_VAULT_DB_PASSWORD=x
export DOMS_REAPER_DB_PASSWORD=x DOMS_AI_DB_PASSWORD=x NATS_JS_KEY=x0123456789abcdef0123456789abcdef
cd "$repo"
"$compose" -f docker-compose.yml config -q
services=$("$compose" -f docker-compose.yml config --services | sort | tr '\n' ' ')
want="ai-suggest conversation-router nats postgres retention-reaper token-vault webhook-ingest "
if [[ $services != "$want" ]]; then
    echo "compose services: got '$services', want '$want'" >&2
    echo "0 passed, 1 failed"
    exit 1
fi
# A missing secret must be refused, not silently empty.
if env -u META_APP_SECRET "$compose" -f docker-compose.yml config -q 2>/dev/null; then
    echo "compose accepted a missing META_APP_SECRET" >&2
    echo "1 passed, 1 failed"
    exit 1
fi
echo "2 passed, 0 failed"
