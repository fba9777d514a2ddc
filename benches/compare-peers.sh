#!/usr/bin/env bash
# Side-by-side throughput of tftplab, tftpd-hpa and atftpd on loopback, same
# client and options, in one run (see compare-peers.py for what it prints).
#
#   benches/compare-peers.sh [--size-mib 64] [--runs 5]
#
# On a fresh machine it installs the peers first (.ci/install-peers.sh, as
# root) and builds tftplab in release mode.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -eq 0 ]; then
    bash .ci/install-peers.sh
else
    echo "not root: using whatever peers are installed (.ci/install-peers.sh installs them)"
fi
cargo build --release --bin tftplab
exec python3 benches/compare-peers.py "$@"
