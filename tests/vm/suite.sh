#!/usr/bin/env bash
# The VM suite: the project's own hosts over real AF_VSOCK on a kernel with the Nitro enclave kernel's netfilter
# set (no nf_tables), in a QEMU guest. Needs root (it boots QEMU with this machine's root as the guest's root).
#
#   tests/vm/suite.sh [--bin DIR] [--out DIR]
#
# --bin: the folder with egress-enclave.dll and egress-host.dll (default: the Release build next to the
# integration tests, else the hosts' own Release output). --out: where results, console and logs go (default: a
# new temporary folder). Prints one line per case (PASS/FAIL/INFO) and exits 0 when every case passed, 1 when one
# failed or the guest did not finish, 77 when QEMU cannot run here (the reason is printed).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
bin= out=
while [ $# -gt 0 ]; do
  case $1 in
    --bin) bin=$(readlink -f "$2"); shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "suite: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
if [ -z "$bin" ]; then
  for candidate in "$repo/tests/Egress.IntegrationTests/bin/Release/net10.0" "$repo/src/Egress.Host/bin/Release/net10.0"; do
    [ -f "$candidate/egress-host.dll" ] && [ -f "$candidate/egress-enclave.dll" ] && { bin=$candidate; break; }
  done
fi
[ -n "$bin" ] && [ -f "$bin/egress-enclave.dll" ] && [ -f "$bin/egress-host.dll" ] ||
  { echo "suite: egress-enclave.dll and egress-host.dll not found (build with: dotnet build Egress.sln -c Release, or pass --bin DIR)" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "suite: SKIPPED: the VM suite needs root" >&2; exit 77; }
out=${out:-$(mktemp -d /tmp/egress-vm.XXXXXX)}
mkdir -p "$out"
rm -f "$out/results"
dotnet=$(readlink -f "$(command -v dotnet)")
printf 'EGRESS_BIN=%q\nDOTNET=%q\n' "$bin" "$dotnet" > "$out/guest.env"

# The guest reads its script while it runs (bash reads as it goes): run a copy, so editing guest.sh meanwhile is safe.
# The deploy kit's enclave entrypoint too (the bootstrap case runs it as an enclave image would).
cp "$here/guest.sh" "$out/guest.sh"
cp "$repo/deploy/enclave/bootstrap.sh" "$out/bootstrap.sh"
set +e
"$here/run-vm.sh" "$out/guest.sh" "$out"
rc=$?
set -e
[ "$rc" -eq 77 ] && exit 77
[ -f "$out/results" ] && grep -v '^END$' "$out/results" || true
echo "suite: console and logs in $out"
[ "$rc" -eq 0 ] || exit 1
grep -qx END "$out/results" || { echo "suite: the guest stopped before every case ran; console: $out/console.log" >&2; tail -n 15 "$out/console.log" >&2; exit 1; }
! grep -q '^FAIL ' "$out/results"
