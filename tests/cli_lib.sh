# cli_lib.sh — what every tests/cli_*.sh script shares; sourced first thing:
#   . "$(dirname "$0")/cli_lib.sh"
# Gives: $ECR and $ECR_BIN (the binary under test, made absolute; from ECR_BIN, default
# build/ecr), $ROOT (the repository), $T (a scratch folder removed at exit unless KEEP is
# set), the pass/fail counters with ok and bad, and:
#   expect CODE DESCRIPTION -- command...  runs the command, stdout/stderr into $T/out and
#                                          $T/err, and checks its exit code
#   has FILE REGEX DESCRIPTION             FILE matches the (basic) regular expression
#   has_fixed FILE STRING DESCRIPTION      FILE contains STRING
#   hasnt FILE STRING DESCRIPTION          FILE does not contain STRING
#   cli_done                               prints "NAME: P passed, F failed"; its status is
#                                          0 only when nothing failed and something passed
set -u
CLI_NAME=$(basename "$0" .sh)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ECR_BIN=${ECR_BIN:-build/ecr}
case "$ECR_BIN" in /*) ;; *) ECR_BIN="$PWD/$ECR_BIN" ;; esac
ECR=$ECR_BIN
T=$(mktemp -d)
trap '[ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT
pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "$CLI_NAME: FAIL: $*" >&2; }

expect() {
    local want=$1 what=$2
    shift 3
    "$@" >"$T/out" 2>"$T/err"
    local got=$?
    if [ "$got" = "$want" ]; then ok; else bad "$what: exit $got, wanted $want: $(head -c 400 "$T/err")"; fi
}
has() {
    if grep -q -- "$2" "$1"; then ok; else bad "$3: '$2' not in $1: $(head -c 400 "$1")"; fi
}
has_fixed() {
    if grep -qF -- "$2" "$1"; then ok; else bad "$3: '$2' not in $1: $(head -c 300 "$1")"; fi
}
hasnt() {
    if grep -qF -- "$2" "$1"; then bad "$3: '$2' found in $1"; else ok; fi
}
cli_done() {
    echo "$CLI_NAME: $pass passed, $fail failed"
    [ "$fail" -eq 0 ] && [ "$pass" -gt 0 ]
}
