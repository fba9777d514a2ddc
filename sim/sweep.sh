#!/usr/bin/env bash
# One simulator sweep split into shards, the same way in the nightly
# workflow (.github/workflows/sim-sweep.yml), in a Kubernetes Indexed Job
# (examples/kubernetes/) and on a laptop:
#
#   sim/sweep.sh shard I N SEEDS OUTDIR [SCENARIO...]
#   sim/sweep.sh merge OUTDIR
#
# `shard` runs shard I of N of every scenario (or those named: files or
# directories, scenarios/ when none) for seeds 1 to SEEDS. It writes
#   OUTDIR/reports/shard-I.json   every run's verdict, for `merge`
#   OUTDIR/runs/<scenario>-<seed>/  each failing run's trace.txt,
#                                 trace.json, trace.mmd, run.pcap and
#                                 verdict.txt
# Shards may run anywhere and at once, into one OUTDIR or into several
# whose reports/ and runs/ are gathered into one before `merge`. A shard
# whose runs failed still exits 0: its report says so and `merge` decides.
# It exits non-zero only if it wrote no report (bad arguments or scenario
# files: 2; the simulator crashed: its status).
#
# `merge` checks that OUTDIR/reports/ holds shards 1 to N once each, prints
# one table (scenario, runs, passed, failed) and, for every failed run, its
# failures and the command that replays it, writes OUTDIR/sweep.xml (JUnit)
# and OUTDIR/merge.txt (what it printed), and exits 0 if every run passed,
# 1 if some failed, 2 if the reports do not make a sweep.
#
# The simulator is $TFTPLAB_SIM if set, else target/release/tftplab-sim
# (built with `cargo build --release -p tftplab-sim` if it is not there).
set -euo pipefail

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
}
fail() {
    echo "sweep.sh: $*" >&2
    echo "usage: sim/sweep.sh shard I N SEEDS OUTDIR [SCENARIO...] | merge OUTDIR | --help" >&2
    exit 2
}
positive() { [[ $1 =~ ^[1-9][0-9]*$ ]]; }

# An existing path, absolute, or relative to the repository when it lies
# inside it (so that replay commands read `scenarios/x.toml`).
resolve() {
    local p=$1 dir
    [[ -e $p ]] || fail "no such file or directory: $p"
    dir=$(cd "$(dirname "$p")" && pwd -P)
    p=$dir/$(basename "$p")
    [[ $p == "$root"/* ]] && p=${p#"$root"/}
    printf '%s\n' "$p"
}

case ${1:-} in
    -h | --help | help)
        usage
        exit 0
        ;;
    shard | merge) ;;
    "") fail "no command" ;;
    *) fail "unknown command: $1" ;;
esac
command=$1
shift

root=$(cd "$(dirname "$0")/.." && pwd -P)
if [[ $command == shard ]]; then
    [[ $# -ge 4 ]] || fail "shard needs I N SEEDS OUTDIR"
    index=$1 count=$2 seeds=$3 out=$4
    shift 4
    if ! positive "$index" || ! positive "$count" || ((index > count)); then
        fail "shard $index of $count: I and N are whole numbers, 1 <= I <= N"
    fi
    positive "$seeds" || fail "SEEDS is a whole number of seeds per scenario, not $seeds"
    scenarios=()
    for s in "$@"; do scenarios+=("$(resolve "$s")"); done
else
    [[ $# -eq 1 ]] || fail "merge needs OUTDIR (and nothing else)"
    out=$1
fi
mkdir -p "$out"
out=$(cd "$out" && pwd -P)

# Relative paths (scenarios/, target/) are the repository's from here on.
cd "$root"
sim=${TFTPLAB_SIM:-}
if [[ -z $sim ]]; then
    sim=${CARGO_TARGET_DIR:-target}/release/tftplab-sim
    if [[ ! -x $sim ]]; then
        echo "== building $sim" >&2
        cargo build --release -p tftplab-sim >&2
    fi
fi
[[ -x $sim ]] || fail "$sim is not an executable (set TFTPLAB_SIM to the simulator)"

if [[ $command == shard ]]; then
    mkdir -p "$out/reports" "$out/runs"
    report=$out/reports/shard-$index.json
    rm -f "$report"
    status=0
    "$sim" run ${scenarios[@]+"${scenarios[@]}"} --seeds "$seeds" --shard "$index/$count" \
        --report "$report" --out "$out/runs" --quiet || status=$?
    if [[ ! -f $report ]] || ((status > 1)); then
        echo "sweep.sh: shard $index/$count wrote no report (tftplab-sim exited $status)" >&2
        exit $((status > 1 ? status : 2))
    fi
    if ((status == 1)); then
        echo "shard $index/$count: some runs failed (files in $out/runs/);" \
            "sim/sweep.sh merge $out reports them with the rest"
    fi
    exit 0
fi

shopt -s nullglob
reports=("$out"/reports/shard-*.json)
status=0
if ((${#reports[@]} == 0)); then
    echo "sweep.sh: no reports in $out/reports/ (run sim/sweep.sh shard first)" >"$out/merge.txt"
    status=2
else
    "$sim" merge "${reports[@]}" --junit "$out/sweep.xml" >"$out/merge.txt" 2>&1 || status=$?
fi
cat "$out/merge.txt"
runs=("$out"/runs/*/)
if ((status == 1 && ${#runs[@]} > 0)); then
    echo
    echo "Each failed run's trace, Mermaid diagram and pcap: $out/runs/<scenario>-<seed>/"
fi
exit "$status"
