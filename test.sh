#!/usr/bin/env bash
# Runs the whole test suite (unit, real-kernel integration and the VM suite in tests/vm) and prints one plain summary line:
#   N passed, N failed[, N skipped]
# Integration tests need root (network namespaces, iptables); without root they are skipped loudly.
# Extra arguments go to `dotnet test` (e.g. ./test.sh --filter "FullyQualifiedName~Policy").
set -uo pipefail
cd "$(dirname "$0")"

results=$(mktemp -d /tmp/egress-test-results.XXXXXX)
trap 'rm -rf "$results"' EXIT

dotnet test Egress.sln -c Release --logger "trx" --logger "console;verbosity=normal" \
  --results-directory "$results" "$@"
rc=$?

total=0 passed=0 failed=0
shopt -s nullglob
trx_files=("$results"/*.trx)
for trx in "${trx_files[@]}"; do
  counters=$(grep -o '<Counters [^>]*>' "$trx" | head -n 1)
  get() { printf '%s' "$counters" | grep -o " $1=\"[0-9]*\"" | grep -o '[0-9]*'; }
  total=$((total + $(get total)))
  passed=$((passed + $(get passed)))
  failed=$((failed + $(get failed) + $(get error) + $(get timeout) + $(get aborted)))
done
skipped=$((total - passed - failed))

if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
  # dotnet test failed without a failing test: a project did not build, or a test host crashed.
  echo "dotnet test exited with $rc without a failing test result (build failure or crashed test host?)" >&2
  failed=1
fi
if [ "${#trx_files[@]}" -eq 0 ]; then
  echo "no test results were produced" >&2
  [ "$rc" -eq 0 ] && rc=1
  [ "$failed" -eq 0 ] && failed=1
fi

# Name every test that did not pass, with the first line of its message, just above the summary line, so a
# log that keeps only its tail still says what failed.
if [ "$failed" -gt 0 ]; then
  for trx in "${trx_files[@]}"; do
    awk '
      /<UnitTestResult / {
        name = ""; bad = 0
        if (match($0, /testName="[^"]*"/)) name = substr($0, RSTART + 10, RLENGTH - 11)
        if ($0 ~ /outcome="(Failed|Error|Timeout|Aborted)"/) { bad = 1; printf "FAILED %s\n", name; shown = 0 }
      }
      bad && !shown && /<Message>/ {
        line = $0; sub(/.*<Message>/, "", line); sub(/<\/Message>.*/, "", line)
        printf "       %s\n", substr(line, 1, 300); shown = 1
      }
    ' "$trx" | sed -e 's/&quot;/"/g' -e 's/&lt;/</g' -e 's/&gt;/>/g' -e 's/&amp;/\&/g'
  done
fi

if [ "$skipped" -gt 0 ]; then
  echo "$passed passed, $failed failed, $skipped skipped"
else
  echo "$passed passed, $failed failed"
fi
if [ "$failed" -gt 0 ] && [ "$rc" -eq 0 ]; then rc=1; fi
exit "$rc"
