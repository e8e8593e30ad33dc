#!/usr/bin/env bash
# cli_faults.sh — nothing committed is lost under faults: kills at every file operation of a
# training run and at random moments, injected write failures (a full disk, EIO) in training
# and in the other commands that write, and one writer per training folder.
#
# Faults come from tests/faultshim.c (LD_PRELOAD; $FAULTSHIM, built by make): the N-th call
# of fwrite, fputc, fflush, fclose, fsync or rename is made to fail or preceded by SIGKILL.
# The reference is an uninterrupted run; after each fault the folder is resumed without
# faults and must end with a model byte-identical to the reference and a log holding every
# step once, in order, with the reference's values (timings aside).
#
# The training faults run for each objective of FAULT_OBJECTIVES (default "lm"; `make
# stress` gives "lm ecr kd lm+contrastive"). FAULT_EVERY=K (default 1) tries only every K-th
# call of each kind but rename, which `make test` uses to stay short; renames, where files
# and checkpoints are committed, are always tried one by one. FAULT_RANDOM_STEPS (240) and
# FAULT_RANDOM_KILLS (40) size the run killed at random moments.
set -u
. "$(dirname "$0")/cli_lib.sh"

SHIM=${FAULTSHIM:-$ROOT/build/faultshim.so}
EVERY=${FAULT_EVERY:-1}
OBJECTIVES=${FAULT_OBJECTIVES-lm} # set but empty: only the other commands and the lock
RANDOM_STEPS=${FAULT_RANDOM_STEPS:-240} # the run killed at random moments: its steps,
RANDOM_KILLS=${FAULT_RANDOM_KILLS:-40}  # and at most this many kills
VALID="$ROOT/build/data/lo10/valid.jsonl"
if [ ! -f "$SHIM" ] || [ ! -f "$VALID" ]; then
    bad "missing $SHIM or $VALID (make test builds both)"
    cli_done
    exit
fi
export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0 # the shim loads first
fault() { ECR_FAULT=$1 LD_PRELOAD=$SHIM "${@:2}"; }

head -n 300 "$VALID" >"$T/small.jsonl"
"$ECR" tokenizer train --data "$T/small.jsonl" --vocab-size 320 --out "$T/tok.json" --quiet &&
    "$ECR" prepare --data "$T/small.jsonl" --tokenizer "$T/tok.json" --out "$T/small.safetensors" --quiet ||
    bad "could not prepare the data"
B0=(--data "$T/small.safetensors" --model tiny --set dim=32 --set n_layers=1 --set n_heads=2 --set hidden_dim=64
    --set max_seq_len=64 --save-every 3 --tokens-per-step 256 --threads 1 --seed 3 --quiet)
# a teacher for kd and, through its embeddings, anchors for ecr
"$ECR" train "${B0[@]}" --steps 6 --out "$T/teacher" 2>"$T/err" &&
    "$ECR" embed --model "$T/teacher" --data "$T/small.safetensors" --raw --out "$T/emb.npy" --quiet 2>>"$T/err" &&
    "$ECR" anchors --emb "$T/emb.npy" --k 8 --out "$T/anchors.safetensors" --quiet 2>>"$T/err" ||
    bad "could not make the teacher and anchors: $(head -c 300 "$T/err")"

# the step records without their timings
steps_of() { grep '"loss"' "$1" | sed -E 's/,"tokens_per_s":[^,]*,"elapsed_s":[^,]*//'; }
# resumes folder $1 (or starts it when no checkpoint was committed) without faults; then it
# must match the reference. $2 names the fault in messages.
finish_and_compare() {
    local d=$1 what=$2
    if [ -f "$d/train_state.safetensors" ]; then "$ECR" train "${F[@]}" --out "$d" --resume 2>"$T/err"
    else "$ECR" train "${F[@]}" --out "$d" 2>"$T/err"; fi
    local rc=$?
    if [ $rc != 0 ]; then bad "$what: the resume failed (exit $rc): $(head -c 300 "$T/err")"; return; fi
    cmp -s "$T/ref/model.safetensors" "$d/model.safetensors" || { bad "$what: model differs from the reference"; return; }
    steps_of "$d/log.jsonl" | cmp -s - "$T/ref.steps" || { bad "$what: log differs from the reference's"; return; }
    ls "$d" | grep -q '\.tmp\.' && { bad "$what: temporary files left: $(ls "$d" | tr '\n' ' ')"; return; }
    ok
}
# how many calls of kind $1 the count file $2 recorded
calls() { awk -v k="$1" '$1 == k { n += $2 } END { print n + 0 }' "$2"; }
# the calls of kind $1 to try, out of $2
points() {
    case $1 in rename) seq 1 "$2" ;; *) seq 1 "$EVERY" "$2" ;; esac
}
# the state step of folder $1's checkpoint, or nothing
state_step() { "$ECR" inspect "$1/train_state.safetensors" 2>/dev/null | awk '$1 == "step" && NF == 2 { print $2 }'; }

# All the training faults for objective $1: kills at file operations and at random moments,
# write failures; totals go to the summary line.
objective_faults() {
    local obj=$1 O=()
    case $obj in
    lm) ;;
    ecr) O=(--anchors "$T/anchors.safetensors") ;;
    kd) O=(--kd "$T/teacher") ;;
    lm+contrastive) O=(--objective lm+contrastive --group-size 3) ;;
    *) bad "unknown objective $obj"; return ;;
    esac
    B=("${B0[@]}" "${O[@]}")
    F=("${B[@]}" --steps 12)  # the run every fault is compared on
    G=("${B[@]}" --steps "$RANDOM_STEPS") # the run killed at random moments
    rm -rf "$T/ref" "$T/refrnd" "$T/rnd" "$T/half" "$T/run" "$T/ref.count" "$T/resume.count"
    # ---- the reference, and how many file operations a run makes ------------------------------
    ECR_FAULT_COUNT="$T/ref.count" LD_PRELOAD=$SHIM "$ECR" train "${F[@]}" --out "$T/ref" 2>"$T/err" ||
        bad "$obj: reference run failed: $(head -c 300 "$T/err")"
    steps_of "$T/ref/log.jsonl" >"$T/ref.steps"
    if [ "$(wc -l <"$T/ref.steps")" = 12 ]; then ok; else bad "$obj: reference log: not 12 step records"; fi
    if [ "$(calls rename "$T/ref.count")" -ge 8 ]; then ok; else bad "the shim counted no renames: $(cat "$T/ref.count")"; fi

    # ---- SIGKILL just before each file operation, then resume -----------------------------------
    local kills=0 random_kills=0 failures=0 kind i e rc pid
    for kind in rename fsync fwrite fflush fclose; do
        for i in $(points $kind "$(calls $kind "$T/ref.count")"); do
            rm -rf "$T/run"
            fault "$kind:$i:kill" "$ECR" train "${F[@]}" --out "$T/run" 2>/dev/null
            rc=$?
            if [ $rc != 137 ]; then bad "$obj: kill before $kind $i: exit $rc, not killed"; continue; fi
            kills=$((kills + 1))
            finish_and_compare "$T/run" "$obj: kill before $kind $i"
        done
    done
    echo "cli_faults: $obj: $kills kills at file operations, each resumed to the reference" >&2

    # ---- SIGKILL at random moments of a longer run ---------------------------------------------
    "$ECR" train "${G[@]}" --out "$T/refrnd" 2>"$T/err" || bad "$obj: $RANDOM_STEPS-step reference failed: $(head -c 300 "$T/err")"
    for _ in $(seq 1 "$RANDOM_KILLS"); do
        if [ -f "$T/rnd/train_state.safetensors" ]; then
            "$ECR" train "${G[@]}" --out "$T/rnd" --resume 2>/dev/null &
        else
            "$ECR" train "${G[@]}" --out "$T/rnd" 2>/dev/null &
        fi
        pid=$!
        sleep "0.$((RANDOM % 6))$((RANDOM % 10))"
        kill -9 $pid 2>/dev/null && random_kills=$((random_kills + 1))
        wait $pid 2>/dev/null
        [ "$(state_step "$T/rnd")" = "$RANDOM_STEPS" ] && break
    done
    "$ECR" train "${G[@]}" --out "$T/rnd" --resume 2>"$T/err" || bad "$obj: random kills: final resume failed: $(head -c 300 "$T/err")"
    if cmp -s "$T/refrnd/model.safetensors" "$T/rnd/model.safetensors"; then ok; else bad "$obj: random kills: model differs"; fi
    if steps_of "$T/refrnd/log.jsonl" | cmp -s - <(steps_of "$T/rnd/log.jsonl"); then ok
    else bad "$obj: random kills: the log differs from the uninterrupted run's"; fi
    echo "cli_faults: $obj: $random_kills kills at random moments, resumed to the reference" >&2

    # ---- write failures while training: exit 1, the file named, the folder still resumable -----
    # a folder whose last checkpoint is step 6 (killed at the first rename after it)
    local n
    for n in $(seq 1 "$(calls rename "$T/ref.count")"); do
        rm -rf "$T/half"
        fault "rename:$n:kill" "$ECR" train "${F[@]}" --out "$T/half" 2>/dev/null
        [ "$(state_step "$T/half")" = 6 ] && break
    done
    [ "$(state_step "$T/half")" = 6 ] || bad "$obj: no checkpoint at step 6 to start the write failures from"
    rm -rf "$T/run"; cp -r "$T/half" "$T/run"
    ECR_FAULT_COUNT="$T/resume.count" LD_PRELOAD=$SHIM "$ECR" train "${F[@]}" --out "$T/run" --resume 2>/dev/null
    for kind in rename fsync fwrite fputc fflush fclose; do
        for i in $(points $kind "$(calls $kind "$T/resume.count")"); do
            for e in ENOSPC EIO; do
                [ $e = EIO ] && [ $((i % 3)) != 1 ] && continue # EIO on a third of them
                rm -rf "$T/run"; cp -r "$T/half" "$T/run"
                fault "$kind:$i:$e" "$ECR" train "${F[@]}" --out "$T/run" --resume 2>"$T/werr"
                rc=$?
                failures=$((failures + 1))
                # exit 1 naming a file of the folder; 0 only where the failed call lost nothing
                # (closing a file that was only read)
                if [ $rc = 1 ]; then
                    if grep -q "$T/run/[a-z_.]*: write failed" "$T/werr" && [ "$(wc -l <"$T/werr")" = 1 ]; then ok
                    else bad "$obj: $e at $kind $i: message does not name the file in one line: $(head -c 300 "$T/werr")"; fi
                elif [ $rc != 0 ]; then
                    bad "$obj: $e at $kind $i: exit $rc, wanted 1: $(head -c 300 "$T/werr")"
                fi
                if ls "$T/run" | grep -q '\.tmp\.'; then bad "$obj: $e at $kind $i: temporary files left"; else ok; fi
                finish_and_compare "$T/run" "$e at $kind $i"
            done
        done
    done
    echo "cli_faults: $obj: $failures write failures while training, each resumed to the reference" >&2
}
for obj in $OBJECTIVES; do objective_faults "$obj"; done

# ---- write failures in the other commands: exit 1, nothing at the output path --------------
writers() { # NAME OUTPUT command...: one command that writes OUTPUT
    cat <<EOF
tokenizer|$T/o/tok.json|tokenizer train --data $T/small.jsonl --vocab-size 300 --out $T/o/tok.json --quiet
prepare|$T/o/data.safetensors|prepare --data $T/small.jsonl --tokenizer $T/tok.json --out $T/o/data.safetensors --quiet
embed|$T/o/emb.npy|embed --model $T/teacher --data $T/small.safetensors --raw --out $T/o/emb.npy --quiet
anchors|$T/o/anchors.safetensors|anchors --emb $T/emb.npy --k 8 --out $T/o/anchors.safetensors --quiet
eval|$T/o/eval.json|eval --model $T/teacher --data $T/small.safetensors --json $T/o/eval.json --quiet
convert|$T/o/conv|convert --model $T/teacher --dtype bf16 --out $T/o/conv
EOF
}
while IFS='|' read -r name out cmd; do
    # the faults: the first and the last call of each kind on the output (seen through the
    # shim's trace), then the first fsync and rename
    rm -rf "$T/o"; mkdir -p "$T/o"
    # shellcheck disable=SC2086 # cmd is a word list
    ECR_FAULT_TRACE=1 LD_PRELOAD=$SHIM "$ECR" $cmd >/dev/null 2>"$T/trace" || bad "$name failed without faults"
    faults=$(grep "^faultshim: [a-z]* [0-9]* $T/o/" "$T/trace" |
        awk '!first[$2] { first[$2] = $3 } { last[$2] = $3 }
             END { for (k in first) { print k ":" first[k]; if (last[k] != first[k]) print k ":" last[k] } }' | sort)
    [ -n "$faults" ] || bad "$name: no file operation on its output seen"
    e=EIO
    for f in $faults fsync:1 rename:1; do
        e=$([ $e = EIO ] && echo ENOSPC || echo EIO) # the two errnos in turn
        {
            rm -rf "$T/o"; mkdir -p "$T/o"
            # shellcheck disable=SC2086
            fault "$f:$e" "$ECR" $cmd >/dev/null 2>"$T/werr"
            rc=$?
            if [ $rc = 1 ]; then ok; else bad "$name with $f:$e: exit $rc, wanted 1: $(head -c 300 "$T/werr")"; fi
            if grep -q "$T/o/" "$T/werr" && [ "$(wc -l <"$T/werr")" = 1 ]; then ok
            else bad "$name with $f:$e: the message does not name the output in one line: $(head -c 300 "$T/werr")"; fi
            if [ ! -e "$out" ] && [ -z "$(find "$T/o" -name '*.tmp.*')" ]; then ok
            else bad "$name with $f:$e: output left behind: $(find "$T/o" | tr '\n' ' ')"; fi
        }
    done
done < <(writers)

# ---- one writer per training folder --------------------------------------------------------
mkdir -p "$T/locked"
exec 9<"$T/locked"
flock -n 9 || bad "could not take the test's own lock"
expect 2 "train into a folder another process holds" -- "$ECR" train "${B0[@]}" --steps 12 --out "$T/locked"
has "$T/err" "locked: another ecr train is writing to this folder" "the refusal says why"
exec 9<&-
expect 0 "the same folder once released" -- "$ECR" train "${B0[@]}" --steps 12 --out "$T/locked"
# two real runs: the second, started while the first trains, refuses and leaves it alone
"$ECR" train "${B0[@]}" --steps 100000 --out "$T/two" 2>/dev/null &
first=$!
for _ in $(seq 1 200); do grep -q '"loss"' "$T/two/log.jsonl" 2>/dev/null && break; sleep 0.05; done
expect 2 "a second ecr train on a folder in use" -- "$ECR" train "${B0[@]}" --steps 100000 --out "$T/two" --resume
has "$T/err" "another ecr train is writing to this folder" "the second run is refused"
if kill -0 $first 2>/dev/null; then ok; else bad "the first run did not survive the second"; fi
kill -9 $first 2>/dev/null
wait $first 2>/dev/null

cli_done
