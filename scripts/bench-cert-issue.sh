#!/usr/bin/env bash
# Times `kith cert issue` for N P-256 nodes (default 10000) with every file
# written and synced, in a temporary directory under $TMPDIR (default /tmp).
# Usage: scripts/bench-cert-issue.sh [N]
# The filesystem matters more than kith: on ext4 without a journal the kernel
# skips inodes deleted in the last minutes one by one (recently_deleted()), so
# a run soon after a test suite deleted many files can take ten times longer.
# docs/PERFORMANCE.md shows how to measure on a fresh filesystem as well.
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-10000}"
cargo build --release -q -p kith
kith="$PWD/target/release/kith"
tmp="$(mktemp -d -p "${TMPDIR:-/tmp}")"
trap 'rm -rf "$tmp"' EXIT
(umask 077 && printf 'benchmark passphrase 1234\n' > "$tmp/pass")
"$kith" --data-dir "$tmp/ca" init --cluster bench.example --passphrase-file "$tmp/pass" >/dev/null
mapfile -t nodes < <(seq -f 'node-%g' 1 "$n")
start=$(date +%s.%N)
"$kith" --data-dir "$tmp/ca" cert issue "${nodes[@]}" --role worker --out "$tmp/nodes" --passphrase-file "$tmp/pass" >/dev/null
end=$(date +%s.%N)
files=$(find "$tmp/nodes" -type f | wc -l)
echo "filesystem: $(df --output=source,fstype "$tmp" | tail -1)"
awk -v s="$start" -v e="$end" -v n="$n" -v f="$files" 'BEGIN { printf "kith cert issue: %d P-256 nodes, %d files, in %.2f s (%.0f nodes/s), including ~0.2 s of Argon2id unlock\n", n, f, e - s, n / (e - s) }'
