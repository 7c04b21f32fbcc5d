#!/usr/bin/env bash
# Benchmark drivers. Usage: bench/run.sh ring|memory|grpc|aggregation|agent|console|all
# Results go to stdout; copy them into bench/RESULTS.md with the date, commit and machine.
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-all}"

machine() {
  echo "date: $(date -u +%Y-%m-%dT%H:%MZ)  commit: $(git rev-parse --short HEAD)"
  echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/{print $2}') GiB"
}

ring() { cargo bench -p caracal-server --bench ring -- --noplot 2>&1 | grep -E '^(ingest|query)/|time:|thrpt:' | grep -v '%'; }
memory() { cargo bench -p caracal-server --bench memory 2>&1 | grep -E '^memory/'; }

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

grpc() {
  cargo build --release -q -p caracal -p caracal-sim --example ingest_load
  cargo build --release -q -p caracal
  local data port_http=18081 port_grpc=17443
  data="$(mktemp -d)"
  ./target/release/caracal server --http "127.0.0.1:$port_http" --grpc "127.0.0.1:$port_grpc" --data "$data" 2>"$data/server.log" &
  local server=$!
  trap 'kill $server 2>/dev/null || true; rm -rf "$data"' RETURN
  for _ in $(seq 50); do curl -sf "127.0.0.1:$port_http/healthz" >/dev/null && break; sleep 0.1; done
  local hz; hz=$(getconf CLK_TCK)
  printf '%-34s %12s %14s\n' "case" "updates/s" "server µs/upd"
  run_case() {
    local name="$1"; shift
    local before after out rate updates
    before=$(cpu_ticks "$server")
    out=$(./target/release/examples/ingest_load --server "127.0.0.1:$port_grpc" "$@")
    after=$(cpu_ticks "$server")
    rate=$(echo "$out" | sed -E 's/.*"rate":([0-9]+).*/\1/')
    updates=$(echo "$out" | sed -E 's/.*"updates":([0-9]+).*/\1/')
    printf '%-34s %12s %14.1f\n' "$name" "$rate" "$(echo "($after - $before) * 1000000 / $hz / $updates" | bc -l)"
  }
  for round in 1 2 3; do
    echo "-- round $round"
    run_case "goldmane connect lock-step, 1"  --mode lockstep --streams 1 --seconds 8
    run_case "goldmane connect lock-step, 8"  --mode lockstep --streams 8 --seconds 8
    run_case "goldmane connect 256 in flight" --mode pipelined --streams 1 --in-flight 256 --seconds 8
    run_case "caracal batched (1000 x 8)"     --mode batched --streams 1 --batch 1000 --in-flight 8 --seconds 8
  done
  kill "$server"; wait "$server" 2>/dev/null || true
  # List of all keys over gRPC, against a fresh server holding exactly 10 k keys.
  ./target/release/caracal server --http "127.0.0.1:$port_http" --grpc "127.0.0.1:$port_grpc" --data "$data/list" 2>>"$data/server.log" &
  server=$!
  for _ in $(seq 50); do curl -sf "127.0.0.1:$port_http/healthz" >/dev/null && break; sleep 0.1; done
  ./target/release/examples/ingest_load --server "127.0.0.1:$port_grpc" --mode list --keys 10000
}

aggregation() {
  python3 -c 'import duckdb' 2>/dev/null || pip install -q duckdb
  cargo build --release -q -p caracal-server --example aggregation_peer
  local csv; csv="$(mktemp -d)/updates.csv"
  for round in 1 2 3; do
    ./target/release/examples/aggregation_peer "$csv"
    python3 bench/duckdb_aggregation.py "$csv"
  done
  rm -f "$csv"
}

agent() {
  cargo bench -p caracal-agent --bench assembly -- --noplot 2>&1 | grep -E 'time:|thrpt:' | grep -v '%'
  if [ "$(id -u)" = 0 ]; then
    cargo build --release -q -p caracal --example lab_agent_bench
    for round in 1 2 3; do ./target/release/examples/lab_agent_bench; done
  else
    echo "agent lab figures need root (network namespaces); skipped"
  fi
}

console() {
  cargo build --release -q -p caracal-server --example console_load
  local address log
  log="$(mktemp)"
  ./target/release/examples/console_load >"$log" 2>&1 &
  local load=$!
  for _ in $(seq 100); do address="$(head -1 "$log")"; [ -n "$address" ] && break; sleep 0.1; done
  sleep 20  # let the first buckets close so the stream is flowing
  node bench/console.mjs "$address" || true
  kill "$load"
}

machine
case "$what" in
  ring) ring ;;
  memory) memory ;;
  grpc) grpc ;;
  aggregation) aggregation ;;
  agent) agent ;;
  console) console ;;
  all) ring; memory; grpc; aggregation; agent ;;
  *) echo "usage: bench/run.sh ring|memory|grpc|aggregation|agent|console|all" >&2; exit 2 ;;
esac
