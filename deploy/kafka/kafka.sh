#!/usr/bin/env bash
# Start, stop and inspect a local Apache Kafka (KRaft) for driftline.
#
#   bash deploy/kafka/kafka.sh up [BROKERS]    # 1 (default) or 3 nodes, first one on 127.0.0.1:9092
#   bash deploy/kafka/kafka.sh down [--purge]  # stop what this script started (--purge: drop data)
#   bash deploy/kafka/kafka.sh status          # which nodes run; exit 0 when all recorded ones do
#
# With a working Docker engine `up` runs docker-compose.kafka.yml (single node). Otherwise it
# resolves the broker jars from Maven Central once (deploy/kafka/pom.xml) and runs each node as a
# combined broker+controller JVM. Node i listens on PORT_BASE + 2(i-1) (9092, 9094, 9096) and its
# controller on that port + 10000. State lives under $DRIFTLINE_KAFKA_HOME (default
# .driftline/kafka): node-<i>/{server.properties,data/,server.log,pid}, cluster.id, layout.
#
# Environment:
#   DRIFTLINE_KAFKA_HOME       state directory (default <repo>/.driftline/kafka)
#   DRIFTLINE_KAFKA_LIB        jar directory, shared by every home (default <repo>/.driftline/kafka/lib)
#   DRIFTLINE_KAFKA_PORT_BASE  client port of node 1 (default 9092)
#   DRIFTLINE_KAFKA_HEAP       JVM heap flags per node (default "-Xms256m -Xmx512m")
#   DRIFTLINE_KAFKA_TIMEOUT    seconds to wait for the cluster to answer (default 90)
#   DRIFTLINE_KAFKA_DOCKER     auto (default) | never | always
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$SCRIPT_DIR/../.." && pwd)"
KAFKA_HOME_DIR="${DRIFTLINE_KAFKA_HOME:-$REPO/.driftline/kafka}"
LIB_DIR="${DRIFTLINE_KAFKA_LIB:-$REPO/.driftline/kafka/lib}"
PORT_BASE="${DRIFTLINE_KAFKA_PORT_BASE:-9092}"
HEAP="${DRIFTLINE_KAFKA_HEAP:--Xms256m -Xmx512m}"
TIMEOUT="${DRIFTLINE_KAFKA_TIMEOUT:-90}"
DOCKER_MODE="${DRIFTLINE_KAFKA_DOCKER:-auto}"
COMPOSE_FILE="$REPO/docker-compose.kafka.yml"
POM="$SCRIPT_DIR/pom.xml"
PY="$REPO/.venv/bin/python"

log() { echo "kafka: $*"; }
die() { echo "kafka: error: $*" >&2; exit 1; }

client_port() { echo $((PORT_BASE + 2 * ($1 - 1))); }
controller_port() { echo $(($(client_port "$1") + 10000)); }
node_dir() { echo "$KAFKA_HOME_DIR/node-$1"; }

# True when something accepts TCP connections on 127.0.0.1:$1.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# True when a Kafka broker answers a metadata request at $1 with at least $2 brokers. Without
# the venv's confluent_kafka it falls back to "the port accepts connections".
broker_answers() {
  local bootstrap="$1" want="${2:-1}"
  if [ -x "$PY" ] && "$PY" -c "import confluent_kafka" 2>/dev/null; then
    "$PY" - "$bootstrap" "$want" <<'EOF' 2>/dev/null
import sys
from confluent_kafka.admin import AdminClient
admin = AdminClient({"bootstrap.servers": sys.argv[1], "socket.timeout.ms": 2000})
try:
    brokers = admin.list_topics(timeout=3).brokers
except Exception:
    sys.exit(1)
sys.exit(0 if len(brokers) >= int(sys.argv[2]) else 1)
EOF
  else
    port_open "${bootstrap##*:}"
  fi
}

# The pid recorded for node $1 when that process is alive and really is that node's broker
# (guards against a stale pid file whose pid was reused); prints nothing otherwise.
live_pid() {
  local dir pid
  dir="$(node_dir "$1")"
  [ -f "$dir/pid" ] || return 0
  pid="$(cat "$dir/pid")"
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null \
      && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "$dir/server.properties"; then
    echo "$pid"
  fi
}

recorded_nodes() {
  local d
  for d in "$KAFKA_HOME_DIR"/node-*; do
    if [ -d "$d" ]; then echo "${d##*/node-}"; fi
  done | sort -n
}

docker_usable() {
  case "$DOCKER_MODE" in
    never) return 1 ;;
    always) return 0 ;;
  esac
  command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1 && compose version >/dev/null 2>&1
}

# `docker compose` (v2 plugin) or the older standalone `docker-compose`.
compose() {
  if docker compose version >/dev/null 2>&1; then
    docker compose "$@"
  elif command -v docker-compose >/dev/null 2>&1; then
    docker-compose "$@"
  else
    return 127
  fi
}

# ---------------------------------------------------------------------------------------------
# Jars

pom_fingerprint() { sha256sum "$POM" | cut -d' ' -f1; }

ensure_jars() {
  local marker="$LIB_DIR/.driftline-complete" want
  want="$(pom_fingerprint)"
  if [ -f "$marker" ] && [ "$(cat "$marker")" = "$want" ]; then
    return 0
  fi
  command -v mvn >/dev/null 2>&1 || die "Maven (mvn) is needed to fetch the Kafka jars: \
apt-get install maven (and Java 17+), or start Docker"
  log "resolving Kafka jars from Maven Central into $LIB_DIR (once)"
  rm -rf "$LIB_DIR"
  mkdir -p "$LIB_DIR"
  # Maven's output is kept back and shown only when it fails (-q alone still prints colour codes).
  local out
  if ! out="$(mvn -q -B -f "$POM" dependency:copy-dependencies \
      -DoutputDirectory="$LIB_DIR" -DincludeScope=runtime 2>&1)"; then
    echo "$out" >&2
    rm -rf "$LIB_DIR"
    die "Maven could not resolve the Kafka jars (its output is above); check network access \
to Maven Central and ~/.m2/settings.xml"
  fi
  echo "$want" >"$marker"
}

java_bin() {
  if [ -n "${JAVA_HOME:-}" ] && [ -x "$JAVA_HOME/bin/java" ]; then
    echo "$JAVA_HOME/bin/java"
  else
    command -v java || die "Java 17+ is needed: apt-get install openjdk-17-jre-headless"
  fi
}

check_java() {
  local major
  major="$("$(java_bin)" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)"
  [ "${major:-0}" -ge 17 ] || die "Kafka 4 needs Java 17+, found '$("$(java_bin)" -version 2>&1 \
| head -1)'; set JAVA_HOME to a newer JDK"
}

# ---------------------------------------------------------------------------------------------
# Configuration and storage

write_server_properties() {
  local i="$1" n="$2" dir voters="" j rf min_isr
  dir="$(node_dir "$i")"
  for j in $(seq 1 "$n"); do
    voters="${voters:+$voters,}$j@127.0.0.1:$(controller_port "$j")"
  done
  if [ "$n" -ge 3 ]; then rf=3; min_isr=2; else rf="$n"; min_isr=1; fi
  mkdir -p "$dir/data"
  cat >"$dir/server.properties" <<EOF
# Generated by deploy/kafka/kafka.sh for a $n-node local cluster; edits are overwritten.
process.roles=broker,controller
node.id=$i
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$(client_port "$i"),CONTROLLER://127.0.0.1:$(controller_port "$i")
advertised.listeners=PLAINTEXT://127.0.0.1:$(client_port "$i")
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/data

# Development defaults: topics are normally created explicitly (driftline topics create, Faust),
# auto-creation stays on so ad-hoc tools work.
auto.create.topics.enable=true
delete.topic.enable=true
num.partitions=3
default.replication.factor=$rf
min.insync.replicas=$min_isr
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$min_isr
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$min_isr
group.initial.rebalance.delay.ms=0

# Small machine: few threads, short retention, small segments.
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
background.threads=4
log.retention.hours=24
log.segment.bytes=67108864
log.retention.check.interval.ms=60000
EOF
}

cluster_id() {
  local file="$KAFKA_HOME_DIR/cluster.id"
  if [ ! -s "$file" ]; then
    mkdir -p "$KAFKA_HOME_DIR"
    "$(java_bin)" -cp "$LIB_DIR/*" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1 >"$file"
    [ -s "$file" ] || die "could not generate a cluster id with kafka.tools.StorageTool"
  fi
  cat "$file"
}

# The node count the storage was formatted for; a different count needs fresh storage because
# the static controller quorum and replication factors are baked into the metadata log.
check_layout() {
  local n="$1" file="$KAFKA_HOME_DIR/layout"
  if [ -f "$file" ] && [ "$(cat "$file")" != "$n" ]; then
    die "$KAFKA_HOME_DIR holds a $(cat "$file")-node cluster, asked for $n; run \
'bash deploy/kafka/kafka.sh down --purge' first (drops its data) or set DRIFTLINE_KAFKA_HOME"
  fi
}

format_storage() {
  local i="$1" dir id
  dir="$(node_dir "$i")"
  [ -f "$dir/data/meta.properties" ] && return 0
  id="$(cluster_id)"
  if ! "$(java_bin)" -cp "$LIB_DIR/*" -Dlog4j2.configurationFile="$SCRIPT_DIR/log4j2.properties" \
      -Dkafka.logs.dir="$dir" kafka.tools.StorageTool format --config "$dir/server.properties" \
      --cluster-id "$id" --ignore-formatted >"$dir/format.log" 2>&1; then
    cat "$dir/format.log" >&2
    die "formatting the storage of node $i failed (above)"
  fi
}

# ---------------------------------------------------------------------------------------------
# Processes

start_node() {
  local i="$1" dir
  dir="$(node_dir "$i")"
  rm -f "$dir/pid"
  # setsid: the broker outlives the calling shell and make's process group.
  # shellcheck disable=SC2086  # HEAP holds several flags
  setsid nohup "$(java_bin)" $HEAP -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$SCRIPT_DIR/log4j2.properties" -Dkafka.logs.dir="$dir" \
    -cp "$LIB_DIR/*" kafka.Kafka "$dir/server.properties" \
    >"$dir/stdout.log" 2>&1 </dev/null &
  echo $! >"$dir/pid"
}

print_logs() {
  local i="$1" dir
  dir="$(node_dir "$i")"
  echo "---- last 40 lines of $dir/server.log ----" >&2
  tail -n 40 "$dir/server.log" 2>/dev/null >&2 || echo "(no server.log)" >&2
  if [ -s "$dir/stdout.log" ]; then
    echo "---- last 20 lines of $dir/stdout.log ----" >&2
    tail -n 20 "$dir/stdout.log" >&2
  fi
}

# Waits until every node logged its start and the cluster answers metadata with all n brokers.
wait_ready() {
  local n="$1" started="$2" deadline i ready
  deadline=$((started + TIMEOUT))
  while :; do
    ready=1
    for i in $(seq 1 "$n"); do
      if [ -z "$(live_pid "$i")" ]; then
        echo "kafka: error: node $i exited during start-up" >&2
        print_logs "$i"
        return 1
      fi
      grep -q "Kafka Server started" "$(node_dir "$i")/server.log" 2>/dev/null || ready=0
    done
    if [ "$ready" -eq 1 ] && broker_answers "127.0.0.1:$(client_port 1)" "$n"; then
      return 0
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
      echo "kafka: error: no answer from 127.0.0.1:$(client_port 1) within ${TIMEOUT}s" >&2
      for i in $(seq 1 "$n"); do print_logs "$i"; done
      return 1
    fi
    sleep 0.5
  done
}

stop_pids() {
  local pids=("$@") pid waited=0
  [ ${#pids[@]} -eq 0 ] && return 0
  kill -TERM "${pids[@]}" 2>/dev/null || true
  while [ "$waited" -lt 60 ]; do
    local alive=0
    for pid in "${pids[@]}"; do
      if kill -0 "$pid" 2>/dev/null; then alive=1; fi
    done
    [ "$alive" -eq 0 ] && return 0
    sleep 0.5
    waited=$((waited + 1))
  done
  log "still running after 30 s, sending SIGKILL to ${pids[*]}"
  kill -KILL "${pids[@]}" 2>/dev/null || true
}

# ---------------------------------------------------------------------------------------------
# Commands

cmd_up_docker() {
  local t0
  t0="$(date +%s)"
  log "Docker engine found: docker compose -f docker-compose.kafka.yml up -d kafka"
  compose -f "$COMPOSE_FILE" up -d kafka
  mkdir -p "$KAFKA_HOME_DIR"
  touch "$KAFKA_HOME_DIR/docker"
  until broker_answers "127.0.0.1:9092" 1; do
    if [ $(($(date +%s) - t0)) -ge "$TIMEOUT" ]; then
      compose -f "$COMPOSE_FILE" logs --tail 40 kafka >&2 || true
      die "the Kafka container did not answer on 127.0.0.1:9092 within ${TIMEOUT}s"
    fi
    sleep 1
  done
  log "broker answers on 127.0.0.1:9092 (docker) after $(($(date +%s) - t0))s"
}

cmd_up() {
  local n="${1:-1}" t0 i running=0 first
  case "$n" in 1 | 3) ;; *) die "BROKERS must be 1 or 3, got '$n'" ;; esac
  t0="$(date +%s)"
  first="127.0.0.1:$(client_port 1)"

  for i in $(recorded_nodes); do
    if [ -n "$(live_pid "$i")" ]; then
      running=$((running + 1))
    elif [ -f "$(node_dir "$i")/pid" ]; then
      log "node $i: stale pid file (process gone), removing it"
      rm -f "$(node_dir "$i")/pid"
    fi
  done
  if port_open "$(client_port 1)" && broker_answers "$first" 1; then
    if [ "$n" -eq 1 ] || [ "$running" -ge "$n" ]; then
      log "a broker already answers on $first; nothing to start"
      return 0
    fi
    die "a broker already answers on $first but $n nodes were asked for; run \
'bash deploy/kafka/kafka.sh down' (stops only what this script started) first"
  fi
  if [ "$running" -gt 0 ]; then
    log "recorded nodes still run but do not answer; stopping them first"
    cmd_down
  fi

  if docker_usable; then
    if [ "$n" -eq 1 ]; then
      cmd_up_docker
      return 0
    fi
    log "docker-compose.kafka.yml runs one broker; starting the $n-node cluster on the JVM instead"
  fi

  for i in $(seq 1 "$n"); do
    if port_open "$(client_port "$i")" || port_open "$(controller_port "$i")"; then
      die "port $(client_port "$i") or $(controller_port "$i") is taken by another process; \
free it or set DRIFTLINE_KAFKA_PORT_BASE"
    fi
  done

  check_java
  ensure_jars
  check_layout "$n"
  mkdir -p "$KAFKA_HOME_DIR"
  # Nodes of a larger earlier cluster must not linger into a smaller one.
  for i in $(recorded_nodes); do
    if [ "$i" -gt "$n" ]; then rm -rf "$(node_dir "$i")"; fi
  done
  for i in $(seq 1 "$n"); do
    write_server_properties "$i" "$n"
    format_storage "$i"
  done
  echo "$n" >"$KAFKA_HOME_DIR/layout"
  for i in $(seq 1 "$n"); do
    start_node "$i"
  done
  log "started $n node(s) (pids: $(for i in $(seq 1 "$n"); do printf '%s ' "$(live_pid "$i")"; \
done)), waiting up to ${TIMEOUT}s for $first"
  if ! wait_ready "$n" "$t0"; then
    cmd_down >/dev/null 2>&1 || true
    die "Kafka did not start; state and logs are in $KAFKA_HOME_DIR"
  fi
  log "$n node(s) answer on $first after $(($(date +%s) - t0))s (logs: $KAFKA_HOME_DIR/node-*/server.log)"
}

cmd_down() {
  local purge="${1:-}" i pid pids=()
  if [ -f "$KAFKA_HOME_DIR/docker" ]; then
    if command -v docker >/dev/null 2>&1; then
      if [ "$purge" = "--purge" ]; then
        compose -f "$COMPOSE_FILE" down --volumes
      else
        compose -f "$COMPOSE_FILE" down
      fi
    fi
    rm -f "$KAFKA_HOME_DIR/docker"
  fi
  for i in $(recorded_nodes); do
    pid="$(live_pid "$i")"
    if [ -n "$pid" ]; then pids+=("$pid"); fi
  done
  if [ ${#pids[@]} -gt 0 ]; then
    log "stopping pids ${pids[*]}"
    stop_pids "${pids[@]}"
  else
    log "no Kafka process started by this script is running"
  fi
  for i in $(recorded_nodes); do rm -f "$(node_dir "$i")/pid"; done
  if [ "$purge" = "--purge" ]; then
    log "removing data under $KAFKA_HOME_DIR (jars kept)"
    for i in $(recorded_nodes); do rm -rf "$(node_dir "$i")"; done
    rm -f "$KAFKA_HOME_DIR/cluster.id" "$KAFKA_HOME_DIR/layout"
  fi
}

cmd_status() {
  local i pid any=0 down=0
  if [ -f "$KAFKA_HOME_DIR/docker" ]; then
    log "started with Docker:"
    compose -f "$COMPOSE_FILE" ps
  fi
  for i in $(recorded_nodes); do
    any=1
    pid="$(live_pid "$i")"
    if [ -n "$pid" ]; then
      log "node $i: running (pid $pid) on 127.0.0.1:$(client_port "$i")"
    else
      log "node $i: stopped"
      down=1
    fi
  done
  [ "$any" -eq 1 ] || log "no node recorded under $KAFKA_HOME_DIR"
  if broker_answers "127.0.0.1:$(client_port 1)" 1; then
    log "a broker answers on 127.0.0.1:$(client_port 1)"
  else
    log "nothing answers on 127.0.0.1:$(client_port 1)"
    return 1
  fi
  return "$down"
}

case "${1:-}" in
  up) cmd_up "${2:-1}" ;;
  down) cmd_down "${2:-}" ;;
  status) cmd_status ;;
  *)
    echo "usage: $0 up [1|3] | down [--purge] | status" >&2
    exit 2
    ;;
esac
