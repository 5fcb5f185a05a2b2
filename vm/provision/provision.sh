#!/usr/bin/env bash
# Provisions a Debian 12 guest for the privileged triad suite: the tools the tests drive (libbpf,
# bpftool, clang/llvm, etcd, unbound, ...), Deno, and tracefs/bpffs mounted at boot.
#
# Runs in two places:
#   - at box build time, inside the debootstrapped root (TRIAD_PROVISION_STAGE=image): packages come
#     from the host's Debian mirror, Deno is copied in from the host beforehand, nothing is mounted;
#   - as the Vagrant shell provisioner on a box we did not build (TRIAD_PROVISION_STAGE=guest): the
#     same packages, Deno from npm, and the mounts done now as well.
# Idempotent: on a box built by `deno task vm:box` the guest stage finds everything in place and
# only checks the mounts.
set -euo pipefail

stage="${TRIAD_PROVISION_STAGE:-guest}"
deno_version="${TRIAD_DENO_VERSION:-2.9.6}"
here="$(cd "$(dirname "$0")" && pwd)"
mapfile -t packages < <(grep -v '^\s*#' "$here/packages.txt" | tr -s ' \t' '\n' | grep -v '^$')

export DEBIAN_FRONTEND=noninteractive
# one dpkg-query for all packages: this runs under software emulation on every `vagrant up`
mapfile -t installed < <(dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' "${packages[@]}" 2>/dev/null |
  awk '$1 == "ii" { print $2 }')
missing=()
for package in "${packages[@]}"; do
  [[ " ${installed[*]} " == *" $package "* ]] || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "provision: installing ${missing[*]}"
  # Maintainer scripts must not start the daemons the tests start themselves.
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  apt-get update
  apt-get install -y --no-install-recommends "${missing[@]}"
  apt-get clean
fi

# The tests start etcd, unbound, dnsmasq and dnsdist themselves on loopback ports: the packaged
# services must not hold those ports.
for unit in etcd unbound dnsmasq dnsdist unbound-resolvconf; do
  # systemctl is slow under emulation: only when not masked yet
  if [ -e "/lib/systemd/system/$unit.service" ] &&
    [ "$(readlink "/etc/systemd/system/$unit.service")" != /dev/null ]; then
    systemctl mask "$unit.service" >/dev/null 2>&1 || ln -sf /dev/null "/etc/systemd/system/$unit.service"
  fi
done

if ! command -v deno >/dev/null || [ "$(deno --version | head -n1 | cut -d' ' -f2)" != "$deno_version" ]; then
  if [ "$stage" = image ]; then
    echo "provision: Deno $deno_version must be copied into the image before provisioning" >&2
    exit 1
  fi
  if ! command -v npm >/dev/null; then
    apt-get install -y --no-install-recommends nodejs npm
  fi
  npm install -g --allow-scripts=deno "deno@$deno_version" ||
    npm install -g "deno@$deno_version"
fi

# tracefs and bpffs at boot (systemd mounts them on most systems; fstab makes it explicit).
grep -q ' /sys/kernel/tracing ' /etc/fstab ||
  echo 'tracefs /sys/kernel/tracing tracefs defaults,nofail 0 0' >>/etc/fstab
grep -q ' /sys/fs/bpf ' /etc/fstab ||
  echo 'bpffs /sys/fs/bpf bpf defaults,nofail 0 0' >>/etc/fstab

if [ "$stage" = guest ]; then
  [ -d /sys/kernel/tracing/events ] || mount -t tracefs tracefs /sys/kernel/tracing
  grep -q ' /sys/fs/bpf bpf ' /proc/self/mounts || mount -t bpf bpf /sys/fs/bpf
fi
echo "provision: done ($stage)"
