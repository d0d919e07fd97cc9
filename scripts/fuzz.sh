#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/) with clang in build-fuzz/ and runs
# each for SECONDS (default 30), starting from a copy of its committed corpus.
# Fails if any fuzzer crashes; the crashing input stays in build-fuzz/artifacts/.
# Usage: scripts/fuzz.sh [SECONDS]     (make fuzz: FUZZ_SECONDS, default 600)
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-30}
[[ $seconds =~ ^[1-9][0-9]*$ ]] || { echo "usage: $0 [SECONDS]" >&2; exit 2; }
build_dir=${FUZZ_BUILD_DIR:-build-fuzz}
fuzzers=(fuzz_startup fuzz_control_request fuzz_config fuzz_reply_ledger fuzz_scram fuzz_scram_client fuzz_hba fuzz_auth_file)

# Its own build dir: clang and sanitizer flags must not leak into the GCC build.
if [[ ! -f $build_dir/CMakeCache.txt ]]; then
  CC=clang CXX=clang++ cmake -S . -B "$build_dir" -DSLUICE_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo
fi
cmake --build "$build_dir" --target fuzzers -j"$(nproc)"

artifacts=$build_dir/artifacts
mkdir -p "$artifacts"
# Inputs libFuzzer finds go to a scratch copy: the committed corpus changes
# only by hand (tests/fuzz/make-corpus.sh, or a crash added as a regression seed).
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

declare -A executions
failed=()
for fuzzer in "${fuzzers[@]}"; do
  corpus=$work/$fuzzer
  cp -r "tests/fuzz/corpus/$fuzzer" "$corpus"
  log=$build_dir/$fuzzer.log
  echo "fuzz: $fuzzer for ${seconds}s (log: $log)"
  # Memory blow-ups and hangs are findings too: -rss_limit_mb is libFuzzer's
  # default made explicit (ASan's quarantine plateaus near 650 MB), -timeout is
  # cut from 1200 s so one slow input fails within a CI budget.
  status=0
  "$build_dir/bin/$fuzzer" "$corpus" -max_total_time="$seconds" -print_final_stats=1 \
    -rss_limit_mb=2048 -timeout=25 -artifact_prefix="$artifacts/$fuzzer-" >"$log" 2>&1 || status=$?
  executions[$fuzzer]=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
  if ((status != 0)); then
    failed+=("$fuzzer")
    # Enough for a CI log: the report, the top of the stack, the input in hex.
    grep -E '^(==[0-9]+==ERROR|SUMMARY|.*runtime error)' "$log" | head -n5 || true
    grep -E '^ +#[0-9]+ ' "$log" | head -n12 || true
    artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n1)
    if [[ -n $artifact ]]; then
      echo "fuzz: crashing input: $artifact"
      od -An -tx1 "$artifact" | head -n8
    fi
    echo "fuzz: $fuzzer FAILED (exit $status); full report in $log"
  fi
done

echo "fuzz: executions in ${seconds}s per target:"
for fuzzer in "${fuzzers[@]}"; do
  printf '  %-22s %s\n' "$fuzzer" "${executions[$fuzzer]:-?}"
done
if ((${#failed[@]} > 0)); then
  echo "fuzz: FAILED: ${failed[*]}; reproduce with $build_dir/bin/FUZZER $artifacts/FILE" >&2
  exit 1
fi
echo "fuzz: no crash"
