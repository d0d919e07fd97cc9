#!/usr/bin/env bash
# `make docker-check`: builds the Dockerfile and checks the image, with no Docker engine and no
# registry. Podman builds without a daemon (`--isolation chroot`); `podman run` is not available
# in the sandbox, so the image is mounted and its programs are run in a chroot instead.
#
#   1. installs podman and debootstrap when missing;
#   2. makes the base image, debian:bookworm-slim, locally with debootstrap from Debian's mirror
#      (once: skipped while podman still has it);
#   3. builds the image (podman's layer cache makes a rebuild of unchanged sources quick);
#   4. checks: the image runs as a non-root user with a HEALTHCHECK, and in a chroot of it
#      `sluiced --version`, `sluiced --check -c /etc/sluice/sluice.json` and `sluicectl --help`
#      succeed; then sluiced runs from a throwaway container's root and the HEALTHCHECK command
#      (`sluicectl ... status`) must answer, and SIGTERM must stop it with exit 0.
#
# Needs root (debootstrap, chroot, image mounts). Env: SLUICE_IMAGE (default localhost/sluice:check),
# DEBIAN_MIRROR (default http://deb.debian.org/debian). Prints a PASS/FAIL summary; exits 1 on FAIL.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd -P)
cd "$root"
readonly image=${SLUICE_IMAGE:-localhost/sluice:check}
readonly build_stage_image=${image%:*}-build:${image##*:}
readonly label=org.opencontainers.image.title=sluice  # on every layer the Dockerfile makes
readonly base=docker.io/library/debian:bookworm-slim
readonly mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
readonly control_socket=/run/sluice/control.sock
started=$SECONDS

say() { echo "docker-check: $*"; }
die() {
  echo "docker-check: FAIL: $*" >&2
  exit 1
}

# ---- results ----
results=()
failures=0
pass() { results+=("PASS  $1"); }
fail_check() {
  results+=("FAIL  $1${2:+: $2}")
  failures=$((failures + 1))
}
summary() {
  echo
  echo "docker-check: summary ($((SECONDS - started)) s)"
  local line
  for line in "${results[@]}"; do echo "  $line"; done
  if ((failures == 0 && ${#results[@]} > 0)); then
    echo "docker-check: PASS"
  else
    echo "docker-check: FAIL ($failures failed)"
  fi
}

# Removes a debootstrap target even when debootstrap was stopped with /proc and /sys mounted in it.
remove_rootfs() {
  local dir=$1 mount
  findmnt --raw --noheadings --output TARGET | awk -v prefix="$dir/" 'index($0, prefix) == 1' | sort -r |
    while read -r mount; do umount --lazy "$mount" || true; done
  rm -rf --one-file-system -- "$dir" "$dir.log"
}

# ---- cleanup: everything this run mounted, made or started ----
rootfs_dir=
image_mounted=false
container=
daemon_pid=
cleanup() {
  local status=$?
  if [[ -n $daemon_pid ]] && kill -0 "$daemon_pid" 2>/dev/null; then
    kill -KILL "$daemon_pid" 2>/dev/null || true
    wait "$daemon_pid" 2>/dev/null || true
  fi
  if [[ -n $container ]]; then
    podman umount "$container" >/dev/null 2>&1 || true
    podman rm --force "$container" >/dev/null 2>&1 || true
  fi
  if $image_mounted; then podman image unmount "$image" >/dev/null 2>&1 || true; fi
  [[ -z $rootfs_dir ]] || remove_rootfs "$rootfs_dir"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

((EUID == 0)) || die "run as root: debootstrap, chroot and podman image mounts need it"
compgen -G 'cli/*.cpp' >/dev/null || die "cli/ has no sources: the image must ship sluicectl"

# One run at a time: two would race on the base image and the image tag.
lock_dir=/run/lock
[[ -d $lock_dir ]] || lock_dir=/tmp
exec 9>"$lock_dir/sluice-docker-check.lock"
flock 9

# ---- 1. tools ----
tools=(podman debootstrap)
missing=()
for package in "${tools[@]}"; do
  [[ $(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true) == "install ok installed" ]] ||
    missing+=("$package")
done
if ((${#missing[@]} > 0)); then
  say "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# What a run killed before its cleanup left behind.
podman ps --all --quiet --filter 'name=^sluice-check-' | xargs -r podman rm --force >/dev/null
for stale in /var/tmp/sluice-debootstrap.*; do
  if [[ -d $stale ]]; then remove_rootfs "$stale"; fi
done

# ---- 2. base image ----
if podman image exists "$base"; then
  say "$base exists; not rebuilding it"
else
  say "making $base with debootstrap from $mirror"
  base_started=$SECONDS
  rootfs_dir=$(mktemp -d /var/tmp/sluice-debootstrap.XXXXXX)
  if ! debootstrap --variant=minbase bookworm "$rootfs_dir" "$mirror" >"$rootfs_dir.log" 2>&1; then
    tail -n 30 "$rootfs_dir.log" >&2
    die "debootstrap failed"
  fi
  # As the official slim image: its apt sources, no documentation, no package caches.
  rm -f "$rootfs_dir/etc/apt/sources.list"
  cat >"$rootfs_dir/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${mirror%/debian}/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  cat >"$rootfs_dir/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
  rm -rf "$rootfs_dir"/var/cache/apt/archives/*.deb "$rootfs_dir"/var/lib/apt/lists/*
  tar -C "$rootfs_dir" --numeric-owner -c . |
    podman import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'CMD ["bash"]' - "$base" >/dev/null
  remove_rootfs "$rootfs_dir"
  rootfs_dir=
  say "made $base in $((SECONDS - base_started)) s"
fi
pass "base image $base"

# ---- 3. build ----
# The build stage is tagged too, so that pruning this project's untagged images (older builds)
# keeps the layers it caches: the package installs, the slowest step after a cold start.
build_log=${TMPDIR:-/tmp}/sluice-docker-check-build.log
build_image() {
  podman build --isolation chroot --pull=never --format docker -f Dockerfile "$@" . >>"$build_log" 2>&1
}
say "building $image (log: $build_log)"
build_started=$SECONDS
: >"$build_log"
# docker format: the OCI format has no HEALTHCHECK and podman would drop it.
if build_image --target build -t "$build_stage_image" && build_image -t "$image"; then
  pass "podman build ($((SECONDS - build_started)) s)"
else
  tail -n 40 "$build_log" >&2
  fail_check "podman build" "the end of $build_log is above"
  summary
  exit 1
fi

# ---- 4. checks ----
# Runs `$2...` and records PASS or FAIL under the name $1, showing the output on failure.
check() {
  local name=$1 output
  shift
  if output=$("$@" 2>&1); then
    pass "$name"
  else
    fail_check "$name" "$(tail -n 5 <<<"$output" | tr '\n' ' ')"
  fi
}

user=$(podman image inspect --format '{{.Config.User}}' "$image")
if [[ -n $user && $user != root && $user != 0 && $user != 0:* && $user != root:* ]]; then
  pass "image runs as non-root user '$user'"
else
  fail_check "image user" "'${user:-<none>}' is root"
fi
healthcheck=$(podman image inspect --format '{{if .Config.Healthcheck}}{{json .Config.Healthcheck.Test}}{{end}}' "$image")
if [[ $healthcheck == *sluicectl*status* ]]; then
  pass "HEALTHCHECK $healthcheck"
else
  fail_check "HEALTHCHECK" "missing (got '${healthcheck:-nothing}')"
fi

mountpoint=$(podman image mount "$image")
image_mounted=true
# The image's own user, by number: chroot(1) would resolve a name against this host's passwd.
ids=$(awk -F: -v name="$user" '$1 == name { print $3 ":" $4 }' "$mountpoint/etc/passwd")
[[ -n $ids ]] || ids=$user

version_of_image() { chroot --userspec="$ids" "$mountpoint" /usr/local/bin/sluiced --version | grep -q '^sluiced '; }
check "sluiced --version" version_of_image
check "sluiced --check -c /etc/sluice/sluice.json" \
  chroot --userspec="$ids" "$mountpoint" /usr/local/bin/sluiced --check -c /etc/sluice/sluice.json
check "sluicectl --help" chroot --userspec="$ids" "$mountpoint" /usr/local/bin/sluicectl --help
podman image unmount "$image" >/dev/null
image_mounted=false

# The container's entry point and HEALTHCHECK, on a writable copy of the image's root. The daemon
# gets a private /proc in its own mount namespace, gone with it.
container=$(podman create --name "sluice-check-$$" "$image")
rootfs=$(podman mount "$container")
# shellcheck disable=SC2016  # $1 and $@ are the inner shell's
unshare --mount --propagation private sh -c 'mount -t proc proc "$1/proc" && shift && exec "$@"' sh "$rootfs" \
  chroot --userspec="$ids" "$rootfs" sluiced -c /etc/sluice/sluice.json >"$rootfs/tmp/sluiced.log" 2>&1 &
daemon_pid=$!
healthy=false
for _ in $(seq 50); do
  if chroot --userspec="$ids" "$rootfs" sluicectl -s "$control_socket" status >/dev/null 2>&1; then
    healthy=true
    break
  fi
  kill -0 "$daemon_pid" 2>/dev/null || break
  sleep 0.2
done
if $healthy; then
  pass "sluiced runs; HEALTHCHECK's 'sluicectl -s $control_socket status' answers"
else
  fail_check "sluiced runs and answers sluicectl status" "$(tail -n 5 "$rootfs/tmp/sluiced.log" | tr '\n' ' ')"
fi
if kill -0 "$daemon_pid" 2>/dev/null; then
  kill -TERM "$daemon_pid"
  stop_status=0
  # The drain has nothing to wait for; 40 s is drain.timeout_s plus a margin.
  timeout 40 tail --pid="$daemon_pid" -f /dev/null || true
  if kill -0 "$daemon_pid" 2>/dev/null; then
    fail_check "SIGTERM stops sluiced" "still running after 40 s"
  else
    wait "$daemon_pid" || stop_status=$?
    daemon_pid=
    if ((stop_status == 0)); then
      pass "SIGTERM drains and stops sluiced with exit 0"
    else
      fail_check "SIGTERM stops sluiced with exit 0" "exit $stop_status: $(tail -n 3 "$rootfs/tmp/sluiced.log" | tr '\n' ' ')"
    fi
  fi
fi

# Older builds of this image, now untagged; other images on the machine are left alone.
podman image prune --force --filter "label=$label" >/dev/null || true

summary
((failures == 0))
