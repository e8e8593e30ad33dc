#!/usr/bin/env bash
# bench_anchors.sh — `ecr anchors` against scikit-learn's KMeans (run by `make bench` from the
# repo root with ECR_BIN set).
#
# Data: 100,000 x 384 float32 rows, a mixture of 256 overlapping Gaussian blobs on the sphere
# (bench/anchors_sklearn.py gen; deterministic). Both sides cluster the same centred,
# L2-normalised rows into 256 clusters with k-means++ seeding, one initialisation and at
# most 25 Lloyd iterations, on 2 threads:
#   ecr      ecr anchors --k 256 --iters 25 --restarts 1 --threads 2   (whole command: reads the
#            .npy, centres, hashes, fits, writes the file)
#   sklearn  KMeans(n_clusters=256, init='k-means++', n_init=1, max_iter=25, tol=0,
#            algorithm='lloyd') with OMP_NUM_THREADS=2 (only .fit is timed). KMeans is Euclidean;
#            on unit vectors that is the comparable workload. Its k-means++ is the greedy
#            variant (2 + log K candidates per centre), ecr's the classic one.
# Prints both wall times, the objective (mean cosine of rows to their normalised centroid) of
# each, the ratio, and PASS when ecr is at least 2x faster (exit 1 on FAIL). Skips (exit 0)
# when no python3 with numpy and scikit-learn is found. Timings on a shared machine are noisy.
set -u
ECR_BIN=${ECR_BIN:-build/ecr}
HERE=$(cd "$(dirname "$0")" && pwd)
N=100000 D=384 K=256 ITERS=25

PY=
for p in python3 /usr/bin/python3; do
    if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import numpy, sklearn' >/dev/null 2>&1; then PY=$p; break; fi
done
if [ -z "$PY" ]; then
    echo "bench_anchors: SKIP: no python3 with numpy and scikit-learn (apt-get install python3-sklearn)"
    exit 0
fi
# Debian's OpenMP build of OpenBLAS, so sklearn's BLAS and OpenMP threads cooperate.
OB=/usr/lib/$(gcc -print-multiarch 2>/dev/null)/openblas-openmp
[ -d "$OB" ] && export LD_LIBRARY_PATH="$OB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
echo "bench_anchors: generating $N x $D float32 rows ($K blobs)..."
"$PY" "$HERE/anchors_sklearn.py" gen "$T/emb.npy" $N $D $K || { echo "bench_anchors: data generation failed"; exit 1; }

t0=$EPOCHREALTIME
"$ECR_BIN" anchors --emb "$T/emb.npy" --k $K --iters $ITERS --restarts 1 --threads 2 --quiet \
    --out "$T/anchors.safetensors" || { echo "bench_anchors: ecr anchors failed"; exit 1; }
t1=$EPOCHREALTIME
ecr_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
ecr_obj=$("$ECR_BIN" inspect "$T/anchors.safetensors" | awk '$1 == "objective" { printf "%.6f", $2 }')

sk=$(OMP_NUM_THREADS=2 "$PY" "$HERE/anchors_sklearn.py" fit "$T/emb.npy" $K $ITERS) \
    || { echo "bench_anchors: sklearn run failed"; exit 1; }
sk_s=$(echo "$sk" | awk '{ print $2 }')
sk_it=$(echo "$sk" | awk '{ print $4 }')
sk_obj=$(echo "$sk" | awk '{ print $6 }')

ratio=$(awk -v e="$ecr_s" -v s="$sk_s" 'BEGIN { printf "%.2f", s / e }')
verdict=$(awk -v r="$ratio" 'BEGIN { print (r >= 2.0) ? "PASS" : "FAIL" }')
printf 'bench_anchors: %d x %d, K = %d, %d iterations max, 1 initialisation, 2 threads\n' $N $D $K $ITERS
printf '  ecr anchors        %8.2f s   objective %s   (whole command)\n' "$ecr_s" "$ecr_obj"
printf '  sklearn KMeans     %8.2f s   objective %s   (fit only, %s iterations)\n' "$sk_s" "$sk_obj" "$sk_it"
printf '  speed-up %sx (requirement: >= 2x): %s\n' "$ratio" "$verdict"
[ "$verdict" = PASS ]
