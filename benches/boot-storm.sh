#!/usr/bin/env bash
# Boot storm: N Raspberry Pi 4 bootloaders netboot at once from tftplab,
# tftpd-hpa, atftpd and dnsmasq in turn, clean and with loss (see
# boot-storm.py for what it measures and prints).
#
#   sudo benches/boot-storm.sh [--boards 20,100] [--loss 0,1] [--runs 1]
#       [--servers tftplab,tftpd-hpa,atftpd,dnsmasq] [--spread-ms 0]
#       [--deadline 600] [--peer-settings best|stock]
#       [--server-args NAME=ARGS] [--json FILE]
#
# As root it installs the peers first (.ci/install-peers.sh); it builds
# tftplab and the boards (benches/boot-storm-boards.rs) in release mode.
set -euo pipefail
cd "$(dirname "$0")/.."
for arg in "$@"; do
    # Help first: nothing installed, nothing built.
    case "$arg" in -h | --help) exec python3 benches/boot-storm.py --help ;; esac
done
if [ "$(id -u)" -eq 0 ]; then
    bash .ci/install-peers.sh
else
    echo "not root: the storms need network namespaces; run it with sudo" >&2
fi
cargo build --release --bin tftplab
cargo build --release -p tftplab-sim --bench boot-storm-boards
exec python3 benches/boot-storm.py "$@"
