#!/bin/sh
# Checks the README's promise on a fresh Debian: in a new bookworm chroot that
# has only what a bare build machine has (gcc, make, git), `make test` and
# `make demo` must install every dependency themselves and pass.
#
#   sudo sh scripts/fresh-machine-check.sh [CHROOT_DIR]     (default /var/tmp/runnel-fresh)
#
# Needs root, debootstrap and Debian's package mirror. Removes nothing outside
# CHROOT_DIR; unmounts what it mounted, also on failure.
set -eu
root=${1:-/var/tmp/runnel-fresh}
src=$(cd "$(dirname "$0")/.." && pwd)
command -v debootstrap >/dev/null || apt-get install -y -qq debootstrap >/dev/null
cleanup() { for m in tmp sys dev proc; do umount -R "$root/$m" 2>/dev/null || true; done; }
trap cleanup EXIT
[ -d "$root/usr" ] || debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian
cp /etc/resolv.conf "$root/etc/"
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
mount --rbind /sys "$root/sys"
mount -t tmpfs tmpfs "$root/tmp"
chroot "$root" sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    --no-install-recommends make gcc libc6-dev git ca-certificates >/dev/null'
rm -rf "$root/root/runnel"
git clone -q "$src" "$root/root/runnel"
chroot "$root" sh -c 'cd /root/runnel && make test && make demo'
echo "fresh-machine-check: make test and make demo passed in $root"
