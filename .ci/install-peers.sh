#!/usr/bin/env bash
# Installs the real TFTP peers that the interop tests (tests/peers/) run on
# loopback: clients tftp-hpa, curl, atftp, busybox; servers tftpd-hpa, atftpd,
# dnsmasq; plus iproute2 (network namespaces for dnsmasq, whose TFTP port is
# fixed at 69) and nftables; and for the hardware runner's stand-in boards
# (hw-tests/): ethtool (veth offloads off), qemu-system-arm (provides
# qemu-system-aarch64) and u-boot-qemu (/usr/lib/u-boot/qemu_arm64/u-boot.bin);
# qemu-system-x86 (with SeaBIOS), ovmf (/usr/share/OVMF/OVMF_CODE.fd, UEFI
# PXE), ipxe-qemu (QEMU's NIC boot ROMs, /usr/lib/ipxe/qemu/) and ipxe
# (/usr/lib/ipxe/ipxe.efi, the EFI application OVMF netboots); tcpdump,
# which reads the simulator's pcaps back in tftplab-sim's CLI tests; and
# systemd, for systemd-socket-activate and systemd-analyze (the serve
# tests' socket activation and unit checks; no service is started).
#
# Idempotent: when everything is present it touches neither apt nor the
# network and finishes in well under a second. Needs root (apt, dpkg).
#
# No peer may run as a service: the tests start their own servers on high
# loopback ports (dnsmasq inside a namespace), and a system tftpd on port 69
# would only hide mistakes. So service starts are blocked during the install
# and the tftpd-hpa service is stopped and disabled afterwards.
#
# atftpd and tftpd-hpa conflict as Debian packages (both provide tftpd), so
# atftpd is not installed: its .deb is unpacked into target/peers/atftpd/,
# and the tests run target/peers/atftpd/usr/sbin/atftpd from there.
set -euo pipefail
cd "$(dirname "$0")/.."

peers_dir="${CARGO_TARGET_DIR:-$PWD/target}/peers"
atftpd_dir="$peers_dir/atftpd"
atftpd_bin="$atftpd_dir/usr/sbin/atftpd"

# dnsmasq-base is dnsmasq's binary without the service and its config;
# libwrap0 and libpcre2-8-0 are what the unpacked atftpd links against (its
# package's own Depends, which dpkg -x does not install).
packages=(tftp-hpa tftpd-hpa atftp curl busybox dnsmasq-base iproute2 nftables
    libwrap0 libpcre2-8-0 ethtool qemu-system-arm u-boot-qemu
    qemu-system-x86 ovmf ipxe-qemu ipxe tcpdump systemd)

if [ "$(id -u)" -ne 0 ]; then
    echo "install-peers: must run as root (apt-get, dpkg)" >&2
    exit 1
fi

installed() {
    [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

export DEBIAN_FRONTEND=noninteractive
apt_updated=0
apt_update_once() {
    if [ "$apt_updated" -eq 0 ]; then
        apt-get update -qq
        apt_updated=1
    fi
}

# Debian's policy-rc.d hook: exit code 101 tells invoke-rc.d and
# deb-systemd-invoke not to start services from maintainer scripts. Only
# placed when none exists, and removed again on exit.
policy=/usr/sbin/policy-rc.d
own_policy=0
cleanup() {
    if [ "$own_policy" -eq 1 ]; then rm -f "$policy"; fi
}
trap cleanup EXIT

missing=()
for p in "${packages[@]}"; do
    installed "$p" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "== installing: ${missing[*]}"
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        own_policy=1
    fi
    apt_update_once
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Port 69 must stay free even on a machine where tftpd-hpa was installed
# earlier as a running service, or on a systemd machine after a reboot.
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
    if systemctl is-enabled --quiet tftpd-hpa 2>/dev/null ||
        systemctl is-active --quiet tftpd-hpa 2>/dev/null; then
        systemctl disable --now tftpd-hpa >/dev/null 2>&1 || true
    fi
else
    # Keep sysvinit from starting it at boot; harmless where already disabled.
    if ls /etc/rc[2-5].d/S*tftpd-hpa >/dev/null 2>&1; then
        update-rc.d tftpd-hpa disable >/dev/null 2>&1 || true
    fi
    # Not `/etc/init.d/tftpd-hpa stop`: it has no pid file and stops every
    # in.tftpd by name, test servers included. The service is the in.tftpd
    # on port 69 of this namespace (tests use port 69 only in namespaces of
    # their own), so stop that one by its pid.
    for pid in $(ss -Hlunp 'sport = :69' 2>/dev/null |
        grep -o '"in\.tftpd",pid=[0-9]*' | cut -d= -f2 | sort -u); do
        echo "== stopping the tftpd-hpa service (pid $pid) on port 69"
        kill "$pid" || true
    done
fi

# curl is often present already but built without TFTP by someone else.
if ! curl -V | grep -qw tftp; then
    echo "install-peers: this curl has no TFTP support (curl -V lists no tftp)" >&2
    exit 1
fi

if ! "$atftpd_bin" --help >/dev/null 2>&1; then
    echo "== unpacking atftpd into $atftpd_dir"
    tmp=$(mktemp -d)
    # apt-get download writes into the current directory; as root it warns
    # that it cannot drop to the _apt user for a directory _apt cannot write.
    chmod 755 "$tmp"
    if ! (cd "$tmp" && apt-get download -qq atftpd 2>/dev/null); then
        apt_update_once
        (cd "$tmp" && apt-get download -qq atftpd)
    fi
    rm -rf "$atftpd_dir"
    mkdir -p "$atftpd_dir"
    dpkg -x "$tmp"/atftpd_*.deb "$atftpd_dir"
    rm -rf "$tmp"
    if ! "$atftpd_bin" --help >/dev/null 2>&1; then
        echo "install-peers: $atftpd_bin does not run:" >&2
        "$atftpd_bin" --help >&2 || true
        exit 1
    fi
fi

if command -v ss >/dev/null && ss -Hlun 'sport = :69' | grep -q .; then
    echo "install-peers: warning: something listens on UDP port 69:" >&2
    ss -Hlunp 'sport = :69' >&2
fi

echo "== peers"
pkgver() { dpkg-query -W -f='${Version}' "$1"; }
echo "tftp (tftp-hpa $(pkgver tftp-hpa)): $(tftp -V 2>&1 | head -n1)"
echo "in.tftpd (tftpd-hpa $(pkgver tftpd-hpa)): $(/usr/sbin/in.tftpd -V 2>&1 | head -n1)"
echo "atftp ($(pkgver atftp)): $(atftp --version 2>&1 | head -n1)"
echo "atftpd ($atftpd_bin): $("$atftpd_bin" --version 2>&1 | head -n1)"
echo "curl: $(curl -V | head -n1)"
echo "busybox: $(busybox 2>&1 | head -n1)"
echo "dnsmasq: $(dnsmasq --version | head -n1)"
echo "ip: $(ip -V)"
echo "nft: $(nft --version)"
echo "ethtool: $(ethtool --version)"
echo "qemu: $(qemu-system-aarch64 --version | head -n1)"
echo "u-boot: $(dpkg-query -W -f='${Version}' u-boot-qemu) /usr/lib/u-boot/qemu_arm64/u-boot.bin"
echo "qemu x86: $(qemu-system-x86_64 --version | head -n1)"
echo "ovmf: $(pkgver ovmf) /usr/share/OVMF/OVMF_CODE.fd"
echo "ipxe-qemu: $(pkgver ipxe-qemu) /usr/lib/ipxe/qemu/pxe-virtio.rom"
echo "ipxe: $(pkgver ipxe) /usr/lib/ipxe/ipxe.efi"
