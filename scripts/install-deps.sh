#!/usr/bin/env bash
# Installs the Debian 12 packages Sluice builds, tests and runs with.
# Idempotent: touches apt only when something is missing, so `make` stays fast and offline-safe.
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  libuv1-dev libpq-dev nlohmann-json3-dev libgtest-dev libcli11-dev
  postgresql postgresql-client
  clang-format clang-tidy
  clang libclang-rt-14-dev  # libFuzzer and the sanitizer runtimes (scripts/fuzz.sh)
)

missing=()
for package in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)
  [[ $status == "install ok installed" ]] || missing+=("$package")
done
((${#missing[@]} == 0)) && exit 0

echo "install-deps: installing ${missing[*]}"
as_root=()
((EUID == 0)) || as_root=(sudo)
# env, not export: sudo resets the environment.
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -q --no-install-recommends "${missing[@]}"
