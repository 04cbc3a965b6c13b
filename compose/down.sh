#!/usr/bin/env bash
# Stops the compose cluster and removes its containers, networks and volumes (all data).
# Images stay (images.sh's cache). Same COMPOSE_PROJECT_NAME / COMPOSE_FILE as up.sh;
# FJORD_COMPOSE_STOP_TIMEOUT (seconds, default 20) bounds each container's graceful stop.
set -euo pipefail
cd "$(dirname "$0")"
export COMPOSE_PROJECT_NAME="${COMPOSE_PROJECT_NAME:-fjord}"
docker-compose down --volumes --remove-orphans --timeout "${FJORD_COMPOSE_STOP_TIMEOUT:-20}"
