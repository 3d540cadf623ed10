#!/bin/sh
# Installs egress-host on the parent instance as a systemd service.
#
#   deploy/host/install.sh [--from DIR] [--config FILE] [--prefix DIR] [--force-config] [--enable]
#
#   --from DIR       a self-contained single-file publish of egress-host (a directory containing the egress-host
#                    executable and no egress-host.dll: a framework-dependent build is refused). Default: run
#                    from an extracted package (deploy/host/package.sh), the egress-host beside this script; run
#                    from the repository, one published now (needs the .NET 10 SDK; self-contained, this machine's
#                    architecture).
#   --config FILE    enclave.toml, the same file the enclave image was built with
#                    [the sample policy: the package's enclave.toml, or samples/enclave.toml in the repository;
#                    it allows only the demo's test addresses, and --enable refuses to start the service on it]
#   --prefix DIR     where the program goes                                            [/opt/egress]
#   --force-config   replace an existing /etc/egress/enclave.toml (it is kept otherwise)
#   --enable         systemctl enable egress-host, and start it unless it runs
#
# A running egress-host is restarted when what it runs is not what is installed (this run changed the program, the
# configuration or the unit, or an earlier one did after it started), so that the installed policy is the one in
# force; its live connections get relay.shutdown_drain_seconds to finish. Otherwise it is left alone.
# Installs: PREFIX/egress-host, PREFIX/README.md, /etc/egress/enclave.toml (0644),
# /etc/systemd/system/egress-host.service. Before anything is installed, the configuration that will be in effect (the
# new one, checked as a copy in /etc/egress so that relative paths resolve as they will, or the kept
# /etc/egress/enclave.toml) is checked with egress-host --check-config: an invalid one installs nothing (exit 1).
# DESTDIR=/some/dir stages the files under that directory instead and skips systemctl (for packaging or a dry run).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
if [ -x "$here/egress-host" ]; then
  # An extracted package (deploy/host/package.sh): the program, unit, README and sample configuration are beside us.
  root= from=$here config="$here/enclave.toml" readme="$here/README.md"
else
  root=$(cd "$here/../.." && pwd) from= config="$root/samples/enclave.toml" readme="$root/deploy/README.md"
fi
prefix=/opt/egress force_config=no enable=no config_given=no changes=
DESTDIR=${DESTDIR:-}

fail() { printf 'install: error: %s\n' "$*" >&2; exit 1; }
say() { printf 'install: %s\n' "$*"; }

while [ "$#" -gt 0 ]; do
  case $1 in
    --from) [ "$#" -ge 2 ] || fail "--from needs a directory"; from=$2; shift 2 ;;
    --config) [ "$#" -ge 2 ] || fail "--config needs a file"; config=$2; config_given=yes; shift 2 ;;
    --prefix) [ "$#" -ge 2 ] || fail "--prefix needs a directory"; prefix=$2; shift 2 ;;
    --force-config) force_config=yes; shift ;;
    --enable) enable=yes; shift ;;
    -h|--help) sed -n '2,/^set -eu$/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
    *) fail "unknown argument '$1' (see --help)" ;;
  esac
done

case $prefix in /*) ;; *) fail "--prefix must be an absolute path" ;; esac
# Without --config the sample policy is installed (it allows only the demo's test addresses): fine to look around, never
# what a parent should run. Enabling the service on it is refused; an existing /etc/egress/enclave.toml is kept anyway.
if [ "$config_given" = no ] && [ "$enable" = yes ] && { [ ! -e "$DESTDIR/etc/egress/enclave.toml" ] || [ "$force_config" = yes ]; }; then
  fail "--enable without --config would start egress-host on the sample policy ($config); pass --config FILE, the enclave.toml the enclave image was built with"
fi
[ -r "$config" ] || fail "configuration '$config' not found or not readable"
if [ -z "$DESTDIR" ] && [ "$(id -u)" -ne 0 ]; then fail "run as root (or set DESTDIR to stage the files)"; fi

staging=
staged=
cleanup() {
  if [ -n "$staging" ]; then rm -rf "$staging"; fi
  if [ -n "$staged" ]; then rm -f "$staged"; fi
}
trap cleanup EXIT
# dash runs no EXIT trap on a signal: exit, so that it does.
trap 'exit 130' INT TERM HUP

if [ -z "$from" ]; then
  command -v dotnet >/dev/null 2>&1 || fail "no --from DIR and no dotnet SDK to publish egress-host with"
  case $(uname -m) in x86_64) rid=linux-x64 ;; aarch64) rid=linux-arm64 ;; *) fail "unsupported architecture $(uname -m)" ;; esac
  staging=$(mktemp -d)
  say "publishing egress-host (self-contained, $rid)"
  dotnet publish "$root/src/Egress.Host/Egress.Host.csproj" -c Release -r "$rid" --self-contained \
    -p:PublishSingleFile=true -p:DebugType=none -p:GenerateDocumentationFile=false -o "$staging" -v q -nologo >&2 ||
    fail "dotnet publish failed"
  from=$staging
fi
[ -x "$from/egress-host" ] || fail "'$from/egress-host' not found or not executable"
# Only the one file is installed: a framework-dependent build's egress-host is a launcher that needs egress-host.dll
# and the rest of its directory, and would be installed without them.
[ ! -e "$from/egress-host.dll" ] || fail "'$from' is a framework-dependent build (egress-host.dll beside the launcher), and only the one file egress-host is installed; give --from a self-contained single-file publish: dotnet publish src/Egress.Host/Egress.Host.csproj -c Release -r linux-x64 --self-contained -p:PublishSingleFile=true -o DIR (or leave --from out to have it published)"

bin_dir="$DESTDIR$prefix"
etc_dir="$DESTDIR/etc/egress"
unit_dir="$DESTDIR/etc/systemd/system"

# The configuration is checked where egress-host will read it (relative [[host.enclaves]] paths resolve from there)
# before anything else is installed: the given file as a hidden copy beside the kept one, and the kept one when it
# stays. A check that fails removes the copy and the directories made for it. A program built for another
# architecture cannot run here (exit 126/127): the check is then skipped, said so, and the first start checks the file.
# $made: the outermost directory created for the copy (none when $etc_dir exists), removed again with what is under it.
made=
d=$etc_dir
while [ ! -d "$d" ]; do made=$d; d=$(dirname "$d"); done
install -d -m 0755 "$etc_dir" || fail "cannot create $etc_dir"
# mktemp creates the copy itself (O_EXCL, mode 0600): never a file or link already there under that name.
staged=$(mktemp "$etc_dir/.enclave.toml.XXXXXX") || { [ -z "$made" ] || rm -rf "$made"; fail "cannot create a file in $etc_dir"; }
undo_stage() {
  rm -f "$staged"
  if [ -n "$made" ]; then rm -rf "$made"; fi
}
cat "$config" >"$staged" || { undo_stage; fail "cannot copy $config to $staged"; }
# The staged copy's lines (its errors, warnings and summary) name the given file, not the copy's temporary name.
name_config() { awk -v copy="$staged" -v given="$config" '{ while ((i = index($0, copy)) > 0) $0 = substr($0, 1, i - 1) given substr($0, i + length(copy)); print }'; }
check_config() { # FILE: 0 valid, 1 not, 2 not checked
  c=0
  if [ "$1" = "$staged" ]; then
    said=$(mktemp) && errors=$(mktemp) || { rm -f "${said:-}"; return 2; }
    "$from/egress-host" --config "$1" --check-config >"$said" 2>"$errors" || c=$?
    name_config <"$said"
    name_config <"$errors" >&2
    rm -f "$said" "$errors"
  else
    "$from/egress-host" --config "$1" --check-config || c=$?
  fi
  case $c in 0) return 0 ;; 126|127) return 2 ;; *) return 1 ;; esac
}
if [ -e "$etc_dir/enclave.toml" ] && [ "$force_config" = no ]; then
  rc=0; check_config "$etc_dir/enclave.toml" || rc=$?
  case $rc in
    0) say "checked $etc_dir/enclave.toml (kept): valid for egress-host" ;;
    2) say "warning: could not run $from/egress-host here to check $etc_dir/enclave.toml; its first start checks it" ;;
    *) undo_stage; fail "$etc_dir/enclave.toml, which is kept, is not valid for egress-host (above); nothing was installed (--force-config replaces it with $config)" ;;
  esac
  if [ "$rc" -ne 2 ] && ! cmp -s "$config" "$etc_dir/enclave.toml"; then
    check_config "$staged" >/dev/null ||
      say "warning: $config is not valid for egress-host (above; checked as a copy in $etc_dir); it is not installed: the kept file stays"
  fi
else
  rc=0; check_config "$staged" || rc=$?
  case $rc in
    0) say "checked $config: valid for egress-host" ;;
    2) say "warning: could not run $from/egress-host here to check $config; its first start checks it" ;;
    *) undo_stage; fail "$config is not valid for egress-host where it would be installed (above; checked as a copy in $etc_dir); nothing was installed" ;;
  esac
fi

# 0755 whatever root's umask: the unit's dynamic user reads the program and the configuration.
install -d -m 0755 "$bin_dir" "$unit_dir" || fail "cannot create $bin_dir and $unit_dir"

# Copy to a temporary name (made by mktemp, never an existing file or link), then rename: a running egress-host keeps
# its old file.
# An identical program is left in place (its time stays that of the install the running service may predate).
if cmp -s "$from/egress-host" "$bin_dir/egress-host"; then
  say "kept $bin_dir/egress-host (the same program)"
else
  changes="$changes program"
  new_program=$(mktemp "$bin_dir/.egress-host.XXXXXX") && cat "$from/egress-host" >"$new_program" && chmod 0755 "$new_program" &&
    mv -f "$new_program" "$bin_dir/egress-host" || { rm -f "${new_program:-}"; fail "cannot install $bin_dir/egress-host"; }
  say "installed $bin_dir/egress-host"
fi
install -m 0644 "$readme" "$bin_dir/README.md" || fail "cannot install $bin_dir/README.md"

if [ -e "$etc_dir/enclave.toml" ] && [ "$force_config" = no ]; then
  if cmp -s "$config" "$etc_dir/enclave.toml"; then
    say "kept $etc_dir/enclave.toml (unchanged)"
  else
    say "kept $etc_dir/enclave.toml, which differs from $config (use --force-config to replace it)"
  fi
elif cmp -s "$staged" "$etc_dir/enclave.toml"; then
  say "kept $etc_dir/enclave.toml (the same as $config)"
else
  changes="$changes configuration"
  chmod 0644 "$staged" && mv -f "$staged" "$etc_dir/enclave.toml" || fail "cannot install $etc_dir/enclave.toml"
  if [ "$config_given" = yes ]; then
    say "installed $etc_dir/enclave.toml"
  else
    say "installed $etc_dir/enclave.toml: the SAMPLE policy (no --config given; it allows only the demo's test addresses): install yours with --config FILE --force-config"
  fi
fi

new_unit=$(mktemp "$unit_dir/.egress-host.service.XXXXXX") &&
  sed -e "s|/opt/egress/|$prefix/|g" "$here/egress-host.service" >"$new_unit" && chmod 0644 "$new_unit" ||
  { rm -f "${new_unit:-}"; fail "cannot write the unit"; }
if cmp -s "$new_unit" "$unit_dir/egress-host.service"; then
  rm -f "$new_unit"
  say "kept $unit_dir/egress-host.service (unchanged)"
else
  changes="$changes unit"
  mv -f "$new_unit" "$unit_dir/egress-host.service" || { rm -f "$new_unit"; fail "cannot install the unit"; }
  say "installed $unit_dir/egress-host.service"
fi
if [ -n "$changes" ]; then
  running_note="a running egress-host would be restarted (changed:$changes)"
else
  running_note="nothing changed: a running egress-host would be restarted only if it started before the files were installed"
fi

if [ -n "$DESTDIR" ]; then
  say "staged under $DESTDIR; systemctl skipped ($running_note)"
  exit 0
fi
if [ ! -d /run/systemd/system ]; then
  say "systemd is not running here; start it with: $prefix/egress-host --config /etc/egress/enclave.toml"
  exit 0
fi
systemctl daemon-reload || fail "systemctl daemon-reload failed"
if [ "$enable" = yes ]; then
  systemctl enable egress-host.service || fail "systemctl enable egress-host failed"
fi
# Seconds since the epoch when the running service started; empty when unknown.
started_at() {
  t=$(systemctl show -p ActiveEnterTimestamp --value egress-host.service 2>/dev/null) && [ -n "$t" ] &&
    date -d "$t" +%s 2>/dev/null
}
# Whether an installed file is newer than the running service: an earlier install it never restarted for.
older_than_files() {
  s=$(started_at) || return 0 # unknown: restart, as an installed policy must be the one in force
  for f in "$bin_dir/egress-host" "$etc_dir/enclave.toml" "$unit_dir/egress-host.service"; do
    [ "$(stat -c %Y "$f")" -le "$s" ] || return 0
  done
  return 1
}
if systemctl is-active --quiet egress-host.service; then
  # Still the old program and policy: what was installed would not run until the next restart.
  if [ -n "$changes" ] || older_than_files; then
    systemctl restart egress-host.service || fail "systemctl restart egress-host failed (journalctl -u egress-host)"
    say "restarted egress-host (${changes:+changed:$changes; }it now runs what is installed): systemctl status egress-host"
  else
    say "egress-host is running what is installed; not restarted"
  fi
elif [ "$enable" = yes ]; then
  systemctl start egress-host.service || fail "systemctl start egress-host failed (journalctl -u egress-host)"
  say "egress-host is running: systemctl status egress-host"
else
  say "next: systemctl enable --now egress-host"
fi
