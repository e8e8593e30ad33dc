"""anchors_sklearn.py — helper of bench/bench_anchors.sh (numpy + scikit-learn).

  gen OUT.npy N D K   writes an N x D float32 .npy: a deterministic mixture of K Gaussian
                      blobs on the sphere (K/8 super-directions with 8 blobs each, blob
                      sizes from a gamma distribution, noise that makes the blobs overlap,
                      as real text embeddings do), plus a common offset that centring removes
  fit EMB.npy K ITERS centres and L2-normalises the rows as `ecr anchors` does, then times
                      sklearn.cluster.KMeans(n_clusters=K, init='k-means++', n_init=1,
                      max_iter=ITERS, tol=0, algorithm='lloyd').fit on them; prints
                      "seconds S iterations I objective O" where O is the mean cosine of the
                      rows to their normalised cluster centre (ecr's objective)
"""
import sys
import time

import numpy as np


def unit(a):
    return a / np.linalg.norm(a, axis=-1, keepdims=True)


def gen(out, n, d, k):
    rng = np.random.default_rng(20240601)
    sup = unit(rng.standard_normal((max(1, k // 8), d)))
    cen = unit(np.repeat(sup, 8, axis=0)[:k] + 0.9 * unit(rng.standard_normal((k, d))))
    w = rng.gamma(2.0, 1.0, k)
    lab = rng.choice(k, size=n, p=w / w.sum())
    x = unit(cen[lab] + 1.2 * unit(rng.standard_normal((n, d)))) + 0.3 * sup[0]
    np.save(out, x.astype(np.float32))


def fit(path, k, iters):
    from sklearn.cluster import KMeans
    x = np.load(path).astype(np.float64)
    x -= x.mean(axis=0)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-300)
    x = x.astype(np.float32)
    t = time.perf_counter()
    km = KMeans(n_clusters=k, init="k-means++", n_init=1, max_iter=iters, tol=0,
                algorithm="lloyd", random_state=0).fit(x)
    t = time.perf_counter() - t
    c = unit(km.cluster_centers_.astype(np.float64))
    obj = float(np.einsum("ij,ij->i", x.astype(np.float64), c[km.labels_]).mean())
    print("seconds %.3f iterations %d objective %.6f" % (t, km.n_iter_, obj))


if __name__ == "__main__":
    if sys.argv[1] == "gen":
        gen(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    elif sys.argv[1] == "fit":
        fit(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        sys.exit("usage: anchors_sklearn.py gen OUT N D K | fit EMB K ITERS")
