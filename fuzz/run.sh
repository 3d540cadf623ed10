#!/usr/bin/env bash
# Coverage-guided fuzzing of one parser with afl-fuzz (afl++) and SharpFuzz. See docs/fuzzing.md.
#
#   fuzz/run.sh <target> [--minutes N] [--execs N] [--resume] [--save-queue]
#
# Targets: tunnel, tunnel-frames, denial-report, dns-query, dns-response, dns-framing, config, tls-client-hello,
# learned-addresses (tests/Egress.Core.Tests/Fuzzing/Targets).
# Installs afl++ (apt, as root) and the sharpfuzz tool (fuzz/dotnet-tools.json) when missing, builds fuzz/Egress.Fuzz
# into fuzz/out/<target>, instruments Egress.Core.dll (and Tomlyn.dll for config) and runs afl-fuzz on
# fuzz/corpus/<target> (seeds and regressions/) until N minutes (default 10) or N executions have passed, whichever
# comes first; --resume continues the previous run in fuzz/findings/<target>; --save-queue copies the inputs afl-fuzz
# found (new coverage) into fuzz/corpus/<target>/found/ for the corpus replay. Then it prints the figures: executions,
# exec/s, edges found, corpus size, crashes and hangs (with the crash inputs, to be replayed without afl-fuzz by the
# uninstrumented build, `dotnet run --project fuzz/Egress.Fuzz -c Release -- <target> FILE...`, and kept in
# fuzz/corpus/<target>/regressions/ once fixed; the instrumented build in fuzz/out needs afl-fuzz's shared memory).
set -euo pipefail
cd "$(dirname "$0")"

usage() { echo "usage: fuzz/run.sh <target> [--minutes N] [--execs N] [--resume] [--save-queue]" >&2; exit 2; }
[ $# -ge 1 ] || usage
target=$1; shift
minutes=10 execs=0 resume=0 save_queue=0
while [ $# -gt 0 ]; do
  case $1 in
    --minutes) minutes=$2; shift 2 ;;
    --execs) execs=$2; shift 2 ;;
    --resume) resume=1; shift ;;
    --save-queue) save_queue=1; shift ;;
    *) usage ;;
  esac
done
[ -d "corpus/$target" ] || { echo "no corpus for target '$target' in fuzz/corpus" >&2; usage; }

if ! command -v afl-fuzz >/dev/null; then
  echo "installing afl++"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq afl++ >/dev/null
fi
dotnet tool restore >/dev/null

out="out/$target"
rm -rf "$out"
dotnet build Egress.Fuzz -c Release -o "$out" -nologo -v quiet >/dev/null
dotnet sharpfuzz "$out/Egress.Core.dll" >/dev/null
if [ "$target" = config ]; then
  dotnet sharpfuzz "$out/Tomlyn.dll" >/dev/null
fi

dict=()
if [ "$target" = config ]; then
  dict+=(-x dict/config.dict)
  toml=/usr/share/doc/afl++-doc/afl/dictionaries/toml.dict
  [ -f "$toml" ] && dict+=(-x "$toml")
fi
limit=()
[ "$execs" -gt 0 ] && limit+=(-E "$execs")

mkdir -p findings
findings="findings/$target"
input="corpus/$target"
if [ "$resume" -eq 1 ] && [ -d "$findings/default" ]; then
  input=-
else
  rm -rf "$findings"
fi

# dotnet itself is not instrumented (SharpFuzz instruments the IL): skip afl's binary check; the fork server is
# SharpFuzz's (Fuzzer.Run), one process that runs every input. -t: a .NET start-up and first JIT can take seconds.
export AFL_SKIP_BIN_CHECK=1 AFL_SKIP_CPUFREQ=1 AFL_NO_AFFINITY=1 AFL_NO_UI=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1
export DOTNET_TieredPGO=0
timeout --foreground -s INT "$((minutes * 60 + 30))" \
  afl-fuzz -i "$input" -o "$findings" -t 5000 -m none -V "$((minutes * 60))" "${limit[@]}" "${dict[@]}" \
    -- dotnet "$out/Egress.Fuzz.dll" "$target" > "findings/$target.log" 2>&1 || true

stats="$findings/default/fuzzer_stats"
[ -f "$stats" ] || { echo "afl-fuzz did not start; see fuzz/findings/$target.log" >&2; tail -n 30 "findings/$target.log" >&2; exit 1; }
get() { awk -F' *: *' -v k="$1" '$1 == k { print $2 }' "$stats"; }
crashes=$(find "$findings/default/crashes" -type f -name 'id:*' 2>/dev/null | wc -l)
hangs=$(find "$findings/default/hangs" -type f -name 'id:*' 2>/dev/null | wc -l)
echo "target:      $target ($(git rev-parse --short HEAD 2>/dev/null || echo '?'), afl-fuzz $(afl-fuzz -h 2>&1 | grep -oE '[0-9]+\.[0-9]+[a-z]' | head -n 1))"
echo "executions:  $(get execs_done) in $(get run_time) s ($(get execs_per_sec) exec/s)"
echo "coverage:    $(get edges_found) edges of $(get total_edges) map entries ($(get bitmap_cvg)), stability $(get stability)"
echo "corpus:      $(get corpus_count) inputs ($(get corpus_found) found), cycles $(get cycles_done)"
echo "crashes:     $crashes   hangs: $hangs"
find "$findings/default/crashes" "$findings/default/hangs" -type f -name 'id:*' 2>/dev/null | sed 's/^/  /'
if [ "$save_queue" -eq 1 ]; then
  mkdir -p "corpus/$target/found"
  for f in "$findings"/default/queue/id:*; do
    case $f in *orig:id:*) ;; *orig:*) continue ;; esac   # a seed, unless a resumed run renamed a found input
    [ "$(stat -c %s "$f")" -le 4096 ] || continue               # the replay keeps small inputs only
    id=$(basename "$f" | sed -E 's/^id:([0-9]+).*/\1/')
    cp "$f" "corpus/$target/found/id-$id"
  done
  echo "saved:       $(find "corpus/$target/found" -type f | wc -l) inputs in fuzz/corpus/$target/found"
fi
