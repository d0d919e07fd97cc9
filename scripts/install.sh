#!/usr/bin/env bash
# `make install`: installs sluiced, sluicectl, the systemd unit, the sysusers.d entry and an
# example config. Idempotent: unchanged files are left alone, and an existing config is kept.
#
#   PREFIX     where the binaries go, as PREFIX/bin (default /usr/local); the unit is rewritten
#              to match
#   DESTDIR    a staging root for packaging: everything goes under it, the unit and sysusers.d
#              entry to the vendor directories (lib/systemd/system, usr/lib/sysusers.d), and
#              nothing is run on the host
#   BUILD_DIR  where the binaries are built (default build)
#
# Without DESTDIR, on a host where systemd is running, it also creates the sluice user
# (systemd-sysusers) and reloads systemd; elsewhere (a container) it says what it skipped.
# /run/sluice needs no tmpfiles.d entry: the unit's RuntimeDirectory= makes it.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd -P)
cd "$root"
prefix=${PREFIX:-/usr/local}
destdir=${DESTDIR:-}
build_dir=${BUILD_DIR:-build}
readonly packaged_prefix=/usr/local  # what systemd/sluice.service names

die() {
  echo "install: $*" >&2
  exit 1
}

[[ $prefix == /* ]] || die "PREFIX must be an absolute path, got '$prefix'"
destdir=${destdir%/}
for binary in sluiced sluicectl; do
  [[ -x $build_dir/bin/$binary ]] || die "$build_dir/bin/$binary is missing; run 'make build' first"
done

if [[ -n $destdir ]]; then
  unit_dir=$destdir/lib/systemd/system
  sysusers_dir=$destdir/usr/lib/sysusers.d
else
  unit_dir=/etc/systemd/system
  sysusers_dir=/etc/sysusers.d
fi
bin_dir=$destdir$prefix/bin
config_dir=$destdir/etc/sluice

if [[ -z $destdir ]] && ((EUID != 0)); then
  for dir in "$prefix/bin" /etc; do
    [[ -w $dir ]] || die "$dir is not writable: run as root (sudo make install), or stage with DESTDIR=..."
  done
fi

changed_unit=false

# Installs the content of SOURCE at DEST with MODE unless DEST already has exactly that content
# and mode; prints what it did. Sets changed_unit when DEST is the unit.
put() {
  local source=$1 dest=$2 mode=$3
  if [[ -f $dest ]] && cmp -s "$source" "$dest" && [[ $(stat -c %a "$dest") == "${mode#0}" ]]; then
    echo "install: $dest is up to date"
    return
  fi
  install -D -m "$mode" "$source" "$dest"
  echo "install: $dest"
  [[ $dest != "$unit_dir/sluice.service" ]] || changed_unit=true
}

staging=$(mktemp -d)
trap 'rm -rf -- "$staging"' EXIT

for binary in sluiced sluicectl; do
  put "$build_dir/bin/$binary" "$bin_dir/$binary" 0755
done

# The unit names $packaged_prefix/bin; point it at PREFIX/bin instead.
sed "s|$packaged_prefix/bin/|$prefix/bin/|g" systemd/sluice.service >"$staging/sluice.service"
put "$staging/sluice.service" "$unit_dir/sluice.service" 0644
put systemd/sluice.sysusers "$sysusers_dir/sluice.conf" 0644

systemd_running=false
[[ -z $destdir && -d /run/systemd/system ]] && systemd_running=true  # sd_booted(3)'s test

if $systemd_running; then
  systemd-sysusers "$sysusers_dir/sluice.conf"
  echo "install: user sluice is $(id sluice)"
fi

# The config is the operator's once it exists: never overwritten. It may come to hold
# passwords, so it is readable only by root and the sluice group when that group exists.
config=$config_dir/sluice.json
if [[ -e $config ]]; then
  echo "install: $config exists; kept as it is (the example is systemd/sluice.json)"
else
  install -d -m 0755 "$config_dir"
  if [[ -z $destdir ]] && getent group sluice >/dev/null; then
    install -m 0640 -o root -g sluice systemd/sluice.json "$config"
  else
    install -m 0644 systemd/sluice.json "$config"
  fi
  echo "install: $config (example configuration)"
fi

if [[ -n $destdir ]]; then
  echo "install: staged under $destdir; nothing was run on this host"
elif $systemd_running; then
  if $changed_unit; then systemctl daemon-reload && echo "install: systemctl daemon-reload"; fi
  echo "install: done; start it with: systemctl enable --now sluice"
else
  echo "install: systemd is not running here (a container?): skipped systemd-sysusers and"
  echo "         systemctl daemon-reload. On a systemd host: systemd-sysusers && systemctl daemon-reload"
fi
