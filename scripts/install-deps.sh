#!/usr/bin/env bash
# Installs the Debian 12 packages Sluice builds, tests and runs with.
# Usage: scripts/install-deps.sh [--build-only]
# Idempotent: touches apt only when something is missing, so `make` stays fast and offline-safe.
set -euo pipefail

# --build-only: what building sluiced and sluicectl needs (the Dockerfile's build stage).
build_only=false
[[ ${1:-} == --build-only ]] && build_only=true

packages=(
  build-essential cmake pkg-config
  lld  # links sluiced in daemon/sluiced.link-order's function order (CMakeLists.txt, SLUICE_LINK_ORDER)
  libuv1-dev libpq-dev nlohmann-json3-dev libgtest-dev libcli11-dev libssl-dev liburing-dev
)
$build_only || packages+=(
  postgresql postgresql-client
  openssl  # the TLS tests' throwaway CA and certificates
  clang-format clang-tidy
  clang libclang-rt-14-dev  # libFuzzer and the sanitizer runtimes (scripts/fuzz.sh)
  # The driver matrix (tests/drivers/, tests/integration/driver_matrix_test.cpp); node-pg below.
  python3-psycopg python3-psycopg2 python3-asyncpg
  libpostgresql-jdbc-java default-jre-headless
  python3-prometheus-client  # the /metrics tests' strict parser (tests/metrics/parse_metrics.py)
)

# node-pg's files, for a machine whose nodejs is not Debian's (NodeSource's, say): Debian's node-pg
# depends on Debian's nodejs, so apt cannot install it there. Its .debs (and those of the modules it
# loads) are fetched and unpacked into this directory instead, and the driver-matrix test runs node
# with NODE_PATH=$node_pg_dir/usr/share/nodejs (CMakeLists.txt's SLUICE_NODE_PG_DIR is the same path).
node_pg_dir="$(cd "$(dirname "$0")/.." && pwd -P)/build/deps/node-pg"
node_pg_debs=(node-pg node-split2 node-xtend node-readable-stream node-inherits node-string-decoder
  node-safe-buffer node-util-deprecate)

installed() {
  [[ $(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true) == installed ]]
}

# One dpkg-query for the whole list: a call per package adds up.
declare -A present=()
while read -r status package; do
  [[ $status == installed ]] && present[$package]=1
done < <(dpkg-query -W -f='${db:Status-Status} ${Package}\n' "${packages[@]}" 2>/dev/null || true)
missing=()
for package in "${packages[@]}"; do
  [[ -n ${present[$package]:-} ]] || missing+=("$package")
done

# node-pg: through apt when it can be, else unpacked into $node_pg_dir. "unpack" once decided.
node_pg=ok
if $build_only; then
  :
elif ! command -v node >/dev/null; then
  installed nodejs || missing+=(nodejs)
  installed node-pg || missing+=(node-pg)
elif ! installed node-pg && [[ ! -f $node_pg_dir/.complete ]]; then
  node_pg=undecided  # apt-get install -s tells, once the package lists are fresh
fi

((${#missing[@]} == 0)) && [[ $node_pg == ok ]] && exit 0

as_root=()
((EUID == 0)) || as_root=(sudo)
# env, not export: sudo resets the environment.
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q

if [[ $node_pg == undecided ]]; then
  if apt-get install -s -q node-pg >/dev/null 2>&1; then
    missing+=(node-pg)
  else
    node_pg=unpack  # this node is not Debian's: its node-* packages would not install
  fi
fi

if ((${#missing[@]} > 0)); then
  echo "install-deps: installing ${missing[*]}"
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if [[ $node_pg == unpack ]]; then
  echo "install-deps: node is not Debian's ($(command -v node)); unpacking node-pg into $node_pg_dir"
  rm -rf "$node_pg_dir"
  mkdir -p "$node_pg_dir/debs"
  (cd "$node_pg_dir/debs" && apt-get download -q "${node_pg_debs[@]}")
  for deb in "$node_pg_dir"/debs/*.deb; do
    dpkg -x "$deb" "$node_pg_dir"
  done
  NODE_PATH=$node_pg_dir/usr/share/nodejs node -e "require('pg')"
  touch "$node_pg_dir/.complete"
fi
