#!/usr/bin/env bash
# Runs a command with Kafka available: starts a broker unless one already answers on the
# configured bootstrap servers, stops what it started (also on failure), returns the command's
# exit code. `make test` and `make demo` both go through here.
set -uo pipefail
cd "$(dirname "$0")/.."
export DRIFTLINE_KAFKA__BOOTSTRAP_SERVERS="${DRIFTLINE_KAFKA__BOOTSTRAP_SERVERS:-127.0.0.1:9092}"

started=0
if ! .venv/bin/python deploy/kafka_ready.py --timeout 3 >/dev/null 2>&1; then
  bash deploy/kafka/kafka.sh up 1 || { echo "could not start Kafka: see .driftline/kafka/*/server.log" >&2; exit 1; }
  started=1
fi
cleanup() { if [ "$started" -eq 1 ]; then bash deploy/kafka/kafka.sh down; fi; }
trap cleanup EXIT

"$@"
