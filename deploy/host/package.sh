#!/bin/sh
# Builds the egress-host packages for the parent instance: one tarball per architecture, installable without the
# .NET SDK or runtime (e.g. on Amazon Linux 2023, x86_64 or Graviton).
#
#   deploy/host/package.sh [--rid linux-x64|linux-arm64]... [--out DIR] [--test]
#
#   --rid RID   build only this runtime identifier (repeatable)            [linux-x64 and linux-arm64]
#   --out DIR   where the tarballs go                                       [artifacts/host]
#   --test      after building, check the package for this machine's architecture: extract it, run the packaged
#               egress-host --help, and install it with DESTDIR into a temporary root
#
# Each tarball, egress-host-VERSION-RID.tar.gz, holds one directory with: egress-host (self-contained, single file:
# no .NET needed on the instance), egress-host.service, install.sh, enclave.toml (the sample), README.md
# (deploy/README.md), INSTALL (the one-line install), LICENSE and THIRD-PARTY-NOTICES.md. On the instance:
#
#   tar xzf egress-host-VERSION-RID.tar.gz && sudo egress-host-VERSION-RID/install.sh --config enclave.toml --enable
#
# Needs the .NET 10 SDK (cross-publishing linux-arm64 from x64 and back works: no native toolchain is involved).
# File times inside the tarball are SOURCE_DATE_EPOCH (default: the last commit's time), owners root.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
rids= out="$root/artifacts/host" test=no

fail() { printf 'package: error: %s\n' "$*" >&2; exit 1; }
say() { printf 'package: %s\n' "$*"; }

while [ "$#" -gt 0 ]; do
  case $1 in
    --rid) [ "$#" -ge 2 ] || fail "--rid needs a runtime identifier"; rids="$rids $2"; shift 2 ;;
    --out) [ "$#" -ge 2 ] || fail "--out needs a directory"; out=$2; shift 2 ;;
    --test) test=yes; shift ;;
    -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) fail "unknown argument '$1' (see --help)" ;;
  esac
done
[ -n "$rids" ] || rids="linux-x64 linux-arm64"
for rid in $rids; do
  case $rid in linux-x64|linux-arm64) ;; *) fail "unsupported runtime identifier '$rid' (linux-x64, linux-arm64)" ;; esac
done
command -v dotnet >/dev/null 2>&1 || fail "the .NET 10 SDK (dotnet) is needed to build the packages"

version=$(sed -n 's:.*<VersionPrefix>\(.*\)</VersionPrefix>.*:\1:p' "$root/Directory.Build.props")
[ -n "$version" ] || fail "no VersionPrefix in Directory.Build.props"
epoch=${SOURCE_DATE_EPOCH:-$(git -C "$root" log -1 --format=%ct 2>/dev/null || date +%s)}
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for rid in $rids; do
  name="egress-host-$version-$rid"
  dir="$work/$name"
  say "publishing $name (self-contained, single file)"
  dotnet publish "$root/src/Egress.Host/Egress.Host.csproj" -c Release -r "$rid" --self-contained \
    -p:PublishSingleFile=true -p:DebugType=none -p:GenerateDocumentationFile=false -o "$work/publish-$rid" \
    -v q -nologo >"$work/publish-$rid.log" 2>&1 || { tail -30 "$work/publish-$rid.log" >&2; fail "dotnet publish -r $rid failed"; }
  mkdir -p "$dir"
  install -m 0755 "$work/publish-$rid/egress-host" "$dir/egress-host"
  install -m 0755 "$here/install.sh" "$dir/install.sh"
  install -m 0644 "$here/egress-host.service" "$dir/egress-host.service"
  install -m 0644 "$root/samples/enclave.toml" "$dir/enclave.toml"
  # egress-host carries the Public Suffix List (MPL 2.0) compiled in: the notices travel with it.
  install -m 0644 "$root/LICENSE" "$dir/LICENSE"
  install -m 0644 "$root/THIRD-PARTY-NOTICES.md" "$dir/THIRD-PARTY-NOTICES.md"
  # deploy/README.md links into the source tree (../docs/, ../samples/, ../tests/), which the package does not hold.
  { printf '%s\n\n' "> In this package, links that start with \`../\` point into the Egress source tree (docs/, samples/, tests/), which is not part of it."
    cat "$root/deploy/README.md"; } >"$dir/README.md"
  chmod 0644 "$dir/README.md"
  printf '%s\n' \
    "egress-host $version for $rid: the parent-instance side of Egress (no .NET needed; glibc >= 2.27 and libstdc++, e.g. Amazon Linux 2023)." \
    "Install as a systemd service, with the enclave.toml your enclave image was built with (README.md has the rest):" \
    "  sudo ./install.sh --config /path/to/enclave.toml --enable" >"$dir/INSTALL"
  find "$dir" -exec touch -h -d "@$epoch" {} +
  tar -C "$work" --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$epoch" -cf - "$name" |
    gzip -n -9 >"$out/$name.tar.gz"
  say "$out/$name.tar.gz ($(du -k "$out/$name.tar.gz" | cut -f1) KiB; egress-host $(du -k "$dir/egress-host" | cut -f1) KiB)"
done

[ "$test" = yes ] || exit 0

case $(uname -m) in x86_64) rid=linux-x64 ;; aarch64) rid=linux-arm64 ;; *) fail "no package to test on $(uname -m)" ;; esac
tarball="$out/egress-host-$version-$rid.tar.gz"
[ -r "$tarball" ] || fail "$tarball was not built (use --rid $rid)"
say "testing $tarball"
t="$work/test"
mkdir -p "$t/extract" "$t/root"
tar -C "$t/extract" -xzf "$tarball"
pkg="$t/extract/egress-host-$version-$rid"
"$pkg/egress-host" --help >"$t/help.txt" 2>&1 || { cat "$t/help.txt" >&2; fail "the packaged egress-host --help failed"; }
grep -q '^egress-host:' "$t/help.txt" || fail "egress-host --help printed no usage"
DESTDIR="$t/root" "$pkg/install.sh" >"$t/install.txt" 2>&1 ||
  { cat "$t/install.txt" >&2; fail "install.sh from the extracted package failed"; }
for f in opt/egress/egress-host opt/egress/README.md etc/egress/enclave.toml etc/systemd/system/egress-host.service; do
  [ -s "$t/root/$f" ] || fail "install.sh did not install /$f"
done
grep -q "^install: checked .*: valid for egress-host" "$t/install.txt" || { cat "$t/install.txt" >&2; fail "install.sh did not check the configuration"; }
# An invalid configuration (an unknown [host] key) installs nothing, and leaves nothing (a DESTDIR with a space).
printf '[host]\nmetrics_listn = "127.0.0.1:9464"\n' >"$t/bad.toml"
if DESTDIR="$t/bad root" "$pkg/install.sh" --config "$t/bad.toml" >"$t/bad.txt" 2>&1; then
  fail "install.sh accepted a configuration egress-host refuses"
fi
grep -q "is not valid for egress-host" "$t/bad.txt" && grep -q "unknown key" "$t/bad.txt" ||
  { cat "$t/bad.txt" >&2; fail "install.sh did not say why the configuration was refused"; }
[ ! -e "$t/bad root" ] || fail "install.sh installed files for a configuration egress-host refuses"
# A relative [[host.enclaves]] file resolves from /etc/egress, where install.sh does not copy it: checked there, refused.
mkdir -p "$t/mapped"
printf '[egress]\nenabled = true\n' >"$t/mapped/a.toml"
printf '[[host.enclaves]]\ncid = "any"\nconfig = "a.toml"\n' >"$t/mapped/main.toml"
if DESTDIR="$t/mapped-root" "$pkg/install.sh" --config "$t/mapped/main.toml" >"$t/mapped.txt" 2>&1; then
  fail "install.sh accepted a configuration whose [[host.enclaves]] file would be missing where it is installed"
fi
grep -q "cannot read \"$t/mapped-root/etc/egress/a.toml\"" "$t/mapped.txt" ||
  { cat "$t/mapped.txt" >&2; fail "install.sh did not check the configuration where it would be installed"; }
[ ! -e "$t/mapped-root" ] || fail "install.sh left files behind for a configuration egress-host refuses"
cmp -s "$pkg/egress-host" "$t/root/opt/egress/egress-host" || fail "the installed egress-host differs from the packaged one"
grep -q "^ExecStart=/opt/egress/egress-host --config /etc/egress/enclave.toml" "$t/root/etc/systemd/system/egress-host.service" ||
  fail "the installed unit does not start /opt/egress/egress-host"
# The installed program with the installed configuration, as the unit starts it (a unix: tunnel in place of VSOCK):
# it must listen, then exit 0 on SIGTERM.
"$t/root/opt/egress/egress-host" --config "$t/root/etc/egress/enclave.toml" --tunnel "unix:$t/tunnel.sock" \
  --log-level Warning >"$t/run.txt" 2>&1 &
pid=$!
i=0
until [ -S "$t/tunnel.sock" ]; do
  kill -0 "$pid" 2>/dev/null || { cat "$t/run.txt" >&2; fail "the installed egress-host exited before listening"; }
  i=$((i + 1)); [ "$i" -le 300 ] || { kill "$pid"; fail "the installed egress-host did not listen within 30 s"; }
  sleep 0.1
done
kill -TERM "$pid"
rc=0; wait "$pid" || rc=$?
[ "$rc" -eq 0 ] || { cat "$t/run.txt" >&2; fail "the installed egress-host exited $rc on SIGTERM"; }
say "ok: extracted; the packaged (self-contained) egress-host runs; install.sh staged it under DESTDIR; the installed one listened and stopped cleanly"
