#!/usr/bin/env bash
# Runs the fuzz targets one after another for SECONDS each, the same way in
# CI (.github/workflows/fuzz.yml) and on a laptop:
#
#   fuzz/run-all.sh SECONDS [TARGET...]     (all targets when none is named)
#
# Each target starts from its working corpus fuzz/corpus/<target> (not in
# git), topped up with the seeds in fuzz/corpus-seed/<target>, and uses
# fuzz/tftp.dict (scenario.dict for scenario_parse). Crashes land in
# fuzz/artifacts/<target>/, full logs in fuzz/logs/<target>.log. Prints exec/s and coverage per target and exits 1
# if any target crashed, timed out or ran out of memory.
#
# Nightly (rustup's `nightly` toolchain) gets AddressSanitizer; without it
# the targets run on the default toolchain with `-s none`. Environment:
#   FUZZ_TOOLCHAIN=stable|nightly   force a choice
#   FUZZ_ARGS="..."                 extra libFuzzer flags, for example
#                                   "-fork=1 -ignore_crashes=1" to keep going
#                                   past a known crash
set -euo pipefail

all_targets=(packet_parse options netascii server_session client_session path_resolve scenario_parse)

usage() {
    echo "usage: $0 SECONDS [TARGET...]   targets: ${all_targets[*]}" >&2
    exit 2
}
[[ $# -ge 1 && $1 =~ ^[0-9]+$ && $1 -gt 0 ]] || usage
seconds=$1
shift
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=("${all_targets[@]}")
for t in "${targets[@]}"; do
    [[ " ${all_targets[*]} " == *" $t "* ]] || { echo "unknown target: $t" >&2; usage; }
done

cd "$(dirname "$0")"

toolchain=${FUZZ_TOOLCHAIN:-}
if [[ -z $toolchain ]]; then
    if command -v rustup >/dev/null && rustup run nightly rustc --version >/dev/null 2>&1; then
        toolchain=nightly
    else
        toolchain=stable
    fi
fi
# The two builds differ in every flag: keep them apart so switching between
# them does not rebuild everything.
if [[ $toolchain == nightly ]]; then
    fuzz=(cargo +nightly fuzz)
    sanitizer=()
    echo "== toolchain: nightly, AddressSanitizer"
else
    fuzz=(cargo fuzz)
    sanitizer=(-s none --target-dir target/stable)
    echo "== toolchain: $(rustc --version), no sanitizer (-s none)"
fi
command -v cargo-fuzz >/dev/null || {
    echo "cargo-fuzz is missing: cargo install cargo-fuzz" >&2
    exit 2
}

echo "== build"
"${fuzz[@]}" build "${sanitizer[@]}"

# Per-target libFuzzer settings: session inputs are long lists of steps;
# scenarios are TOML text with their own vocabulary.
dict() {
    case $1 in
        scenario_parse) echo scenario.dict ;;
        *) echo tftp.dict ;;
    esac
}
max_len() {
    case $1 in
        server_session | client_session) echo 8192 ;;
        *) echo 4096 ;;
    esac
}

# The last libFuzzer status line: "#N DONE cov: C ft: F corp: K/S ... exec/s: E"
# (fork mode: "#N: cov: C ft: F corp: K exec/s E ...").
stat() {
    local line=$1 key=$2
    sed -nE "s|.* $key:? ([0-9]+).*|\1|p" <<<"$line"
}

mkdir -p logs
failed=()
summary=()
for t in "${targets[@]}"; do
    echo "== $t: ${seconds}s"
    mkdir -p "corpus/$t" "artifacts/$t"
    cp -n "corpus-seed/$t"/* "corpus/$t"/ 2>/dev/null || true
    marker=$(mktemp)
    log="logs/$t.log"
    set +e
    # shellcheck disable=SC2086 # FUZZ_ARGS is a list of flags
    timeout -k 30 $((seconds + 600)) "${fuzz[@]}" run "${sanitizer[@]}" "$t" "corpus/$t" -- \
        -max_total_time="$seconds" -dict="$(dict "$t")" -max_len="$(max_len "$t")" \
        -timeout=30 -print_final_stats=1 ${FUZZ_ARGS:-} >"$log" 2>&1
    rc=$?
    set -e
    found=$(find "artifacts/$t" -type f -newer "$marker" \
        \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) | sort)
    rm -f "$marker"
    last=$(grep -E ' cov: [0-9]+' "$log" | tail -n 1 || true)
    execs=$(stat "$last" exec/s)
    cov=$(stat "$last" cov)
    ft=$(stat "$last" ft)
    corp=$(stat "$last" corp)
    if [[ $rc -eq 0 && -z $found ]]; then
        result=ok
    else
        result="FAILED (exit $rc, $(grep -c . <<<"$found") new artifact(s))"
        failed+=("$t")
        grep -m 3 -A 2 -E 'panicked at|ERROR: (AddressSanitizer|libFuzzer)' "$log" || true
        while IFS= read -r artifact; do
            [[ -z $artifact ]] || echo "    $artifact"
        done <<<"$found"
        echo "    reproduce: cd fuzz && ${fuzz[*]} run ${sanitizer[*]:+${sanitizer[*]} }$t <artifact>"
    fi
    line=$(printf '%-16s %8s %7s %8s %7s  %s' "$t" "${execs:--}" "${cov:--}" "${ft:--}" "${corp:--}" "$result")
    echo "$line"
    summary+=("$line")
done

echo
printf '%-16s %8s %7s %8s %7s  %s\n' target exec/s cov ft corpus result
printf '%s\n' "${summary[@]}"
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "crashes in: ${failed[*]} (logs in fuzz/logs/, inputs in fuzz/artifacts/)" >&2
    exit 1
fi
