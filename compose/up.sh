#!/usr/bin/env bash
# Starts the compose cluster in one command: builds the images (images.sh; cached after
# the first run), `docker-compose up -d` (services start in dependency order, each once
# its dependencies are healthy), then waits until the load balancer answers /readyz and
# GET /v1/cluster lists all storage nodes.
#
# Environment: FJORD_BIN (the binary, see images.sh), FJORD_COMPOSE_PORT (host port of
# the load balancer, default 8080), FJORD_COMPOSE_BIND (default 127.0.0.1),
# COMPOSE_PROJECT_NAME (default fjord), COMPOSE_FILE (default docker-compose.yml; e.g.
# docker-compose.yml:test.yml), FJORD_COMPOSE_UP_TIMEOUT (seconds, default 180),
# FJORD_COMPOSE_SKIP_IMAGES=1 (use the images as they are), FJORD_COMPOSE_TOKEN_FILE
# (where the bootstrap token is copied, default .fjord-token here, owner-only),
# FJORD_COMPOSE_CA_FILE (where the CA certificate is copied, default .fjord-ca.pem here).
set -euo pipefail
cd "$(dirname "$0")"
export COMPOSE_PROJECT_NAME="${COMPOSE_PROJECT_NAME:-fjord}"
port="${FJORD_COMPOSE_PORT:-8080}"
bind="${FJORD_COMPOSE_BIND:-127.0.0.1}"
[ "$bind" = 0.0.0.0 ] && bind=127.0.0.1
base="https://$bind:$port"
timeout="${FJORD_COMPOSE_UP_TIMEOUT:-180}"
t0=$SECONDS
log() { printf '[up %3d s] %s\n' $((SECONDS - t0)) "$*" >&2; }

if [ "${FJORD_COMPOSE_SKIP_IMAGES:-0}" != 1 ]; then ./images.sh; fi
# There is no registry to pull from: a missing image would fail as a pull.
for image in "${FJORD_IMAGE:-fjord:local}" "${FJORD_BASE_IMAGE:-fjord-base:bookworm}"; do
  docker image inspect "$image" >/dev/null 2>&1 || { log "no image $image: run ./images.sh"; exit 1; }
done
expected="$(docker-compose config --services | grep -c '^node[0-9]*$')"
log "docker-compose -p $COMPOSE_PROJECT_NAME up -d (load balancer on $base)"
docker-compose up -d --no-build

deadline=$((SECONDS + timeout))
token_file="${FJORD_COMPOSE_TOKEN_FILE:-.fjord-token}"
ca_file="${FJORD_COMPOSE_CA_FILE:-.fjord-ca.pem}"
log "waiting for $base/readyz and $expected storage nodes in GET /v1/cluster"
while :; do
  if docker-compose exec -T gateway1 cat /secrets/certs/ca.pem >"$ca_file.tmp" 2>/dev/null &&
    mv "$ca_file.tmp" "$ca_file" &&
    curl -fsS -o /dev/null --max-time 5 --cacert "$ca_file" "$base/readyz" 2>/dev/null &&
    (umask 077 && docker-compose exec -T gateway1 cat /secrets/bootstrap-token >"$token_file.tmp" 2>/dev/null) &&
    mv "$token_file.tmp" "$token_file"; then
    nodes="$(curl -fsS --max-time 5 --cacert "$ca_file" -H "authorization: Bearer $(cat "$token_file")" "$base/v1/cluster" 2>/dev/null |
      python3 -c 'import json,sys; print(len(json.load(sys.stdin)["nodes"]))' 2>/dev/null || echo 0)"
    [ "$nodes" = "$expected" ] && break
  fi
  if [ $SECONDS -ge $deadline ]; then
    log "not ready after ${timeout} s:"
    docker-compose ps >&2
    exit 1
  fi
  sleep 1
done
log "ready: $base ($expected storage nodes, 2 gateways behind the load balancer)"
log "the bootstrap token (principal admin) is in $token_file, the CA certificate in $ca_file:"
log "  export FJORD_URL=$base FJORD_TOKEN=\"\$(cat $token_file)\" FJORD_CA_FILE=$ca_file"
