#!/usr/bin/env bash
# `make test`: start Kafka unless one already answers, run every test layer, stop what we started
# (also on failure), exit non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."
export DRIFTLINE_KAFKA__BOOTSTRAP_SERVERS="${DRIFTLINE_KAFKA__BOOTSTRAP_SERVERS:-127.0.0.1:9092}"

started=0
if ! .venv/bin/python deploy/kafka_ready.py --timeout 3 >/dev/null 2>&1; then
  bash deploy/kafka/kafka.sh up 1 || { echo "could not start Kafka: see .driftline/kafka/*/server.log" >&2; exit 1; }
  started=1
fi
cleanup() { [ "$started" -eq 1 ] && bash deploy/kafka/kafka.sh down; }
trap cleanup EXIT

.venv/bin/pytest -q -p no:cacheprovider "$@"
