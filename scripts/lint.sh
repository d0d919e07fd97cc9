#!/usr/bin/env bash
# Lint: clang-format (check only) over every project .h/.cpp, then clang-tidy over the project's
# translation units in compile_commands.json. Exits non-zero on any finding.
#
#   lint.sh            check (needs a configured build: BUILD_DIR, default build)
#   lint.sh --format   rewrite the sources in place with clang-format instead
#
# clang-tidy skips tests/ by default (SLUICE_TIDY_TESTS=1 includes it): GoogleTest TUs take the
# longest to analyse, which matters on a 2-core CI, and their findings are mostly about macro-
# generated code. Tests still pass clang-format and build with -Werror.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd -P)
cd "$root"
build_dir=${BUILD_DIR:-build}
jobs=$(nproc)

sources() {
  find . \( -path './build*' -o -path './cmake-build*' -o -path './.git' -o -path './third_party' \) -prune \
    -o -type f \( -name '*.h' -o -name '*.hpp' -o -name '*.cpp' -o -name '*.cc' \) -print0
}

if [[ ${1:-} == --format ]]; then
  sources | xargs -0 -r clang-format -i
  exit 0
fi

status=0

echo "lint: clang-format"
if ! sources | xargs -0 -r clang-format --dry-run --Werror; then
  echo "lint: clang-format found differences; 'make format' fixes them" >&2
  status=1
fi

echo "lint: clang-tidy"
db=$build_dir/compile_commands.json
[[ -f $db ]] || { echo "lint: $db is missing; run 'make build' first" >&2; exit 1; }
exclude="^$root/($build_dir|build[^/]*|cmake-build[^/]*)/"
[[ ${SLUICE_TIDY_TESTS:-0} == 1 ]] || exclude="$exclude|^$root/tests/"
mapfile -t units < <(sed -n 's/^ *"file": *"\(.*\)",\{0,1\}$/\1/p' "$db" | grep "^$root/" |
  grep -Ev "$exclude" | sort -u)
if ((${#units[@]} == 0)); then
  echo "lint: no translation units to check in $db" >&2
else
  # One clang-tidy per unit, in parallel; a unit's output is shown only when it has findings.
  # shellcheck disable=SC2016
  if ! printf '%s\0' "${units[@]}" | xargs -0 -r -n 1 -P "$jobs" bash -c '
      if ! out=$(clang-tidy --quiet --extra-arg=-Wno-unknown-warning-option -p "$0" "$1" 2>&1); then
        grep -v -E "^[0-9]+ warnings? (and [0-9]+ errors? )?generated\.$" <<<"$out" >&2
        exit 1
      fi' "$build_dir"; then
    echo "lint: clang-tidy found problems" >&2
    status=1
  fi
fi

((status == 0)) && echo "lint: clean"
exit "$status"
