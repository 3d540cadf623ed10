#!/usr/bin/env bash
# Boots a QEMU guest (TCG) with a Debian kernel and runs a guest script in it as PID 1. The guest's root is this
# machine's root, read-only over virtio-9p under a tmpfs overlay (so dotnet, iptables, curl, dig and dnsmasq are
# the ones installed here); OUT_DIR is shared writable at /vm-out. The guest has real AF_VSOCK (vsock_loopback).
#
#   tests/vm/run-vm.sh GUEST_SCRIPT OUT_DIR
#
# Exit: 0 the guest ran and powered off; 77 QEMU cannot run here (the reason is printed: not x86_64, no qemu,
# no kernel package to be had); 1 the guest did not finish in EGRESS_VM_TIMEOUT seconds (default 900) or QEMU
# failed. OUT_DIR/console.log is the guest's console.
# Environment: EGRESS_VM_CACHE (kernel and initramfs cache, default /var/cache/egress-vm), EGRESS_VM_KERNEL_PACKAGE
# (default: the linux-image-*-amd64 package that linux-image-amd64 depends on), EGRESS_VM_MEMORY_MB (3072).
set -euo pipefail

guest=$(readlink -f "$1")
out=$(readlink -f "$2")
here=$(cd "$(dirname "$0")" && pwd)
cache=${EGRESS_VM_CACHE:-/var/cache/egress-vm}
timeout_s=${EGRESS_VM_TIMEOUT:-900}
memory=${EGRESS_VM_MEMORY_MB:-3072}

skip() { echo "run-vm: SKIPPED: $*" >&2; exit 77; }
[ "$(uname -m)" = x86_64 ] || skip "the VM suite boots an x86_64 guest with qemu-system-x86_64; this machine is $(uname -m)"
command -v qemu-system-x86_64 >/dev/null || skip "qemu-system-x86_64 not found (apt-get install qemu-system-x86)"
[ -x /bin/busybox ] && /bin/busybox --list | grep -qx switch_root || skip "a static busybox is needed for the initramfs (apt-get install busybox-static)"
command -v depmod >/dev/null && command -v modprobe >/dev/null || skip "depmod/modprobe not found (apt-get install kmod)"
command -v cpio >/dev/null || skip "cpio not found (apt-get install cpio)"

mkdir -p "$cache" "$out"

# --- the kernel: a Debian linux-image package, unpacked (never installed) -------------------------------------
package=${EGRESS_VM_KERNEL_PACKAGE:-}
if [ -z "$package" ]; then
  package=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
  if [ -z "$package" ]; then
    apt-get update -qq >/dev/null 2>&1 || true
    package=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
  fi
fi
[ -n "$package" ] || skip "no linux-image-*-amd64 package is known to apt (apt-get update failed?)"
kver=${package#linux-image-}
kdir=$cache/$package
if [ ! -f "$kdir/boot/vmlinuz-$kver" ]; then
  (cd "$cache" && apt-get download "$package" >/dev/null 2>&1) || skip "apt-get download $package failed"
  rm -rf "$kdir.tmp" && mkdir -p "$kdir.tmp"
  dpkg-deb -x "$cache/${package}_"*.deb "$kdir.tmp"
  depmod -b "$kdir.tmp" "$kver"
  rm -f "$cache/${package}_"*.deb
  mv "$kdir.tmp" "$kdir"
fi

# --- the initramfs: busybox, the modules needed to mount the 9p root under an overlay, and initramfs-init --------
initrd=$cache/initramfs-$kver.cpio.gz
if [ ! -f "$initrd" ] || [ "$here/initramfs-init" -nt "$initrd" ]; then
  staging=$(mktemp -d)
  mkdir -p "$staging/bin" "$staging/modules"
  cp /bin/busybox "$staging/bin/busybox"
  ln -s busybox "$staging/bin/sh"
  cp "$here/initramfs-init" "$staging/init" && chmod 755 "$staging/init"
  modprobe -d "$kdir" -S "$kver" -a --show-depends virtio_pci 9pnet_virtio 9p overlay |
    awk '$1 == "insmod" {print $2}' | awk '!seen[$0]++' | while read -r ko; do
      cp "$ko" "$staging/modules/"
      basename "$ko" >> "$staging/modules.order"
    done
  (cd "$staging" && find . | cpio -o -H newc --quiet | gzip -1) > "$initrd.tmp"
  mv "$initrd.tmp" "$initrd"
  rm -rf "$staging"
fi

# The guest reads where the kernel's modules are from here (its own /lib/modules does not have them).
printf 'EGRESS_VM_MODULES=%q\nEGRESS_VM_KVER=%q\n' "$kdir" "$kver" > "$out/vm.env"
# QEMU splits -append on spaces and -fsdev options on commas: refuse paths it would misread.
for path in "$guest" "$out"; do
  case $path in *[[:space:],]*) echo "run-vm: '$path' has a space or comma, which QEMU's options cannot carry" >&2; exit 2 ;; esac
done

# --- boot -------------------------------------------------------------------------------------------------------
set +e
timeout --kill-after=10 "$timeout_s" qemu-system-x86_64 \
  -accel tcg,thread=multi -cpu max -m "$memory" -smp 2 -nographic -no-reboot -nic none \
  -kernel "$kdir/boot/vmlinuz-$kver" -initrd "$initrd" \
  -append "console=ttyS0 panic=-1 quiet loglevel=3 egress.guest=$guest" \
  -fsdev local,id=root,path=/,security_model=none,readonly=on,multidevs=remap \
  -device virtio-9p-pci,fsdev=root,mount_tag=root \
  -fsdev local,id=out,path="$out",security_model=none,multidevs=remap \
  -device virtio-9p-pci,fsdev=out,mount_tag=out \
  </dev/null >"$out/console.log" 2>&1
rc=$?
set -e
if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
  echo "run-vm: the guest did not finish within ${timeout_s}s; console: $out/console.log" >&2
  exit 1
fi
[ "$rc" -eq 0 ] || { echo "run-vm: qemu exited with $rc; console: $out/console.log" >&2; tail -n 20 "$out/console.log" >&2; exit 1; }
