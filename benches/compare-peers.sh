#!/usr/bin/env bash
# Side-by-side throughput of tftplab, tftpd-hpa, atftpd and dnsmasq on
# loopback, same client and options, in one run (see compare-peers.py for
# what it prints; as root it all runs in a network namespace of its own,
# since dnsmasq serves only port 69).
#
#   benches/compare-peers.sh [--size-mib 64 | --size-kib N] [--runs 5]
#       [--only SUBSTRING ...] [--no-ceiling] [--ceiling-secs 3]
#       [--loss PCT] [--timeout S] [--baseline PATH] [--no-dnsmasq]
#
#   --baseline PATH         also measure another tftplab binary (a build of
#                           main, say) in the same rotation: before/after
#                           a change in one run
#   --only "blksize 1468"   only the configurations whose label contains it
#                           (repeatable)
#   --no-ceiling            skip the loopback UDP ceiling (iperf3, unpaced,
#                           one flow, before and after the downloads; on by
#                           default)
#   --loss 1                everything in a fresh network namespace where
#                           nftables drops 1 % of UDP datagrams at random;
#                           1 MiB files, 300 s timeout, lock-step and
#                           windowsize 16 configurations at blksize 1468
#
# On a fresh machine it installs the peers first (.ci/install-peers.sh, as
# root) and iperf3 (for the ceiling), and builds tftplab in release mode.
set -euo pipefail
cd "$(dirname "$0")/.."
for arg in "$@"; do
    # Help first: nothing installed, nothing built.
    case "$arg" in -h | --help) exec python3 benches/compare-peers.py --help ;; esac
done
if [ "$(id -u)" -eq 0 ]; then
    bash .ci/install-peers.sh
    if ! command -v iperf3 >/dev/null; then
        echo "== installing iperf3 (loopback UDP ceiling)"
        # Debian asks whether to run iperf3 as a daemon; noninteractive
        # takes the default, no.
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -qq --no-install-recommends iperf3 >/dev/null ||
            { apt-get update -qq &&
                apt-get install -y -qq --no-install-recommends iperf3 >/dev/null; }
    fi
else
    echo "not root: using whatever peers are installed (.ci/install-peers.sh installs them)"
fi
cargo build --release --bin tftplab
exec python3 benches/compare-peers.py "$@"
