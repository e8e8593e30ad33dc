#!/usr/bin/env bash
# fuzz.sh — runs the libFuzzer targets (built by `make FUZZ=1 fuzz-bins`).
#   fuzz.sh BIN_DIR            each target for FUZZ_RUNS executions (default 1,000,000; or
#                              FUZZ_TIME seconds, if set, whichever comes first), starting
#                              from its seeds (fuzz/corpus/NAME/) and the inputs it found
#                              before (build-fuzz/corpus/NAME/); a crash is saved in
#                              fuzz/regress/NAME/ (commit it once fixed) and fails the run.
#                              Prints a table: target, executions, seconds, exec/s, crashes.
#   fuzz.sh --smoke BIN_DIR    the regression and seed inputs of each target, then
#                              FUZZ_TIME (default 2) seconds of fuzzing: make test's part.
# Targets run with -close_fd_mask=3 (the library's messages hidden; libFuzzer's reports
# shown) and -rss_limit_mb=2048, -timeout=10 (a hang is a failure too).
set -uo pipefail
cd "$(dirname "$0")/.."
SMOKE=0
# the targets write their inputs to files: in memory when /dev/shm is there
[ -z "${TMPDIR:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ] && export TMPDIR=/dev/shm
[ "${1:-}" = --smoke ] && { SMOKE=1; shift; }
BIN=${1:?usage: fuzz.sh [--smoke] BIN_DIR}
RUNS=${FUZZ_RUNS:-1000000}
fail=0
rows=()
for bin in "$BIN"/fuzz_*; do
    [ -x "$bin" ] || continue
    name=$(basename "$bin"); name=${name#fuzz_}
    seeds=fuzz/corpus/$name regress=fuzz/regress/$name work=build-fuzz/corpus/$name
    mkdir -p "$work" "$regress"
    opts=(-close_fd_mask=3 -rss_limit_mb=2048 -timeout=10 -artifact_prefix="$regress/" -print_final_stats=1)
    [ -f "fuzz/dict/$name.dict" ] && opts+=(-dict="fuzz/dict/$name.dict")
    if [ $SMOKE = 1 ]; then
        inputs=$(find "$regress" "$seeds" -type f 2>/dev/null | grep -v '/\.' || true)
        if [ -n "$inputs" ]; then
            # shellcheck disable=SC2086 # one argument per input file
            "$bin" "${opts[@]}" -runs=1 $inputs >"$work.log" 2>&1 || { echo "fuzz: $name: a saved input fails: see $work.log"; tail -20 "$work.log"; fail=1; continue; }
        fi
        "$bin" "${opts[@]}" -max_total_time="${FUZZ_TIME:-2}" "$work" "$seeds" >"$work.log" 2>&1 ||
            { echo "fuzz: $name: crash (input in $regress/)"; tail -30 "$work.log"; fail=1; continue; }
        echo "fuzz: $name: $(grep -o 'stat::number_of_executed_units: [0-9]*' "$work.log" | grep -o '[0-9]*$') executions, no crash"
        continue
    fi
    t0=$(date +%s.%N)
    "$bin" "${opts[@]}" -runs="$RUNS" ${FUZZ_TIME:+-max_total_time=$FUZZ_TIME} "$work" "$seeds" >"$work.log" 2>&1
    rc=$?
    t1=$(date +%s.%N)
    execs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$work.log" | grep -o '[0-9]*$')
    [ $rc = 0 ] || { fail=1; echo "fuzz: $name: exit $rc, see $work.log"; tail -30 "$work.log"; }
    rows+=("$(awk -v n="$name" -v e="${execs:-0}" -v s="$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" -v c="$((rc != 0))" \
        'BEGIN { printf "| %s | %d | %.0f | %.0f | %s |", n, e, s, e / (s > 0 ? s : 1), c }')")
    echo "${rows[-1]}"
done
if [ $SMOKE = 0 ]; then
    echo
    echo "| target | executions | seconds | exec/s | crashed |"
    echo "| --- | --- | --- | --- | --- |"
    printf '%s\n' "${rows[@]}"
fi
exit $fail
