#!/usr/bin/env python3
"""NumPy / scikit-learn reference for ecr's metrics (src/eval/metrics.c), written independently
of the C code.

Builds a small synthetic "corpus" of n = G x L texts (G groups of translations in L
languages, language 0 playing English, one label per group) with float32 embeddings X
[n, d] that have group, label and language structure, a teacher Y [n, D] (a non-linear
function of X plus noise), a projected U [n, D], anchors [K, D] with their mean, a
symmetric matrix for the eigen-solver and a synthetic training log, and writes
tests/fixtures/metrics_ref.safetensors:

  tensors   x [n, d] F32, y [n, D] F32, u [n, D] F32, lang/label/group [n] I32,
            anchors [K, D] F32 (unit rows), anchor_mean [D] F32, sym [m, m] F32,
            knn_x / knn_y [n, 10] I32 (cosine neighbours, self excluded),
            codes [n] I32 (teacher codes of y under the anchors), log_loss / log_gnorm [S] F32,
            log_clipped [S] I32
  metadata  n, d, D, K, G, L, m, S and the reference values as decimal strings (repr of
            float64, space-separated for arrays):
            erank_x (numpy SVD of the centred X), sv_x (its singular values),
            anisotropy_x (mean off-diagonal cosine from the full n x n matrix),
            cka_xy, cka_uy (CKA from numpy), knn_overlap_xy (from knn_x, knn_y),
            silhouette_x (sklearn.metrics.silhouette_score(X, label, metric="cosine")),
            p1_x / p1_x_mean (per language, both directions, from the full cosine matrix),
            transfer_x / transfer_x_mean (sklearn KNeighborsClassifier(10, metric="cosine",
            algorithm="brute") fitted on language 0), agreement_u (share of rows of U whose
            nearest anchor is codes[i]), eig_sym (numpy.linalg.eigvalsh, ascending),
            spikes, grad_norm_cv, clipped_share (stability definitions of ecr.h).

Regenerate from the repository root with Debian's interpreter (numpy + scikit-learn; the
`python3` on PATH may lack them):

    /usr/bin/python3 tools/metrics_ref.py [tests/fixtures/metrics_ref.safetensors]

Deterministic for given numpy / scikit-learn versions and BLAS thread count: the committed
file was made with OpenBLAS's default (2 threads here); at 1 thread the last digit or two of
eig_sym differ, far inside the test's tolerance. tests/test_metrics.c reads the
file and needs no Python.
"""
import sys

import numpy as np
from sklearn.metrics import silhouette_score
from sklearn.neighbors import KNeighborsClassifier

from fixture_io import write_safetensors

G, L = 60, 5          # groups, languages (n = 300 texts, group-major like lo10)
D_X, D_Y = 24, 16     # student and teacher dims
N_LABELS = 4
K_ANCHORS = 6
M_SYM = 30
S_LOG = 400
KNN = 10


def unit_rows(a):
    n = np.linalg.norm(a, axis=1, keepdims=True)
    return np.where(n > 0, a / np.where(n > 0, n, 1), 0)


def cosine(a):
    a = unit_rows(a.astype(np.float64))
    return a @ a.T


def knn_lists(a, k):
    s = cosine(a)
    np.fill_diagonal(s, -np.inf)
    # most similar first, lower index first on ties (stable sort of -s)
    return np.argsort(-s, axis=1, kind="stable")[:, :k].astype(np.int32)


def effective_rank(x):
    xc = x.astype(np.float64) - x.astype(np.float64).mean(axis=0)
    sv = np.linalg.svd(xc, compute_uv=False)
    p = sv / sv.sum()
    p = p[p > 0]
    return float(np.exp(-(p * np.log(p)).sum())), sv


def anisotropy(x):
    s = cosine(x)
    n = len(x)
    return float((s.sum() - np.trace(s)) / (n * (n - 1)))


def cka(x, y):
    x = x.astype(np.float64) - x.astype(np.float64).mean(axis=0)
    y = y.astype(np.float64) - y.astype(np.float64).mean(axis=0)
    num = np.linalg.norm(x.T @ y, "fro") ** 2
    return float(num / (np.linalg.norm(x.T @ x, "fro") * np.linalg.norm(y.T @ y, "fro")))


def p1(x, lang, group):
    s = cosine(x)
    per = []
    en = np.where(lang == 0)[0]
    for l in range(1, L):
        xs = np.where(lang == l)[0]
        a = np.mean(group[xs[np.argmax(s[np.ix_(en, xs)], axis=1)]] == group[en])
        b = np.mean(group[en[np.argmax(s[np.ix_(xs, en)], axis=1)]] == group[xs])
        per.append((a + b) / 2)
    return per, float(np.mean(per))


def transfer(x, lang, label):
    en = lang == 0
    clf = KNeighborsClassifier(n_neighbors=KNN, metric="cosine", algorithm="brute")
    clf.fit(x[en], label[en])
    per = [float(np.mean(clf.predict(x[lang == l]) == label[lang == l])) for l in range(1, L)]
    return per, float(np.mean(per))


def stability(loss, gnorm, clipped, window=50, sigmas=3.0):
    spikes = 0
    for t in range(window, len(loss)):
        w = loss[t - window:t].astype(np.float64)
        if loss[t] > w.mean() + sigmas * w.std():
            spikes += 1
    g = gnorm.astype(np.float64)
    return spikes, float(g.std() / g.mean()), float(np.mean(clipped))


def floats(v):
    return " ".join(repr(float(x)) for x in np.atleast_1d(v))


def main():
    out_path = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/metrics_ref.safetensors"
    rng = np.random.default_rng(20240611)
    n = G * L
    group = np.repeat(np.arange(G), L).astype(np.int32)
    lang = np.tile(np.arange(L), G).astype(np.int32)
    glabel = rng.integers(0, N_LABELS, G)
    label = glabel[group].astype(np.int32)

    group_vec = rng.normal(size=(G, D_X)) * 0.7
    label_vec = rng.normal(size=(N_LABELS, D_X)) * 1.2
    lang_vec = rng.normal(size=(L, D_X)) * 0.9
    scales = np.linspace(1.5, 0.2, D_X)               # an uneven spectrum
    common = rng.normal(size=D_X) * 1.0                # a shared direction: anisotropy > 0
    x = (group_vec[group] + label_vec[label] + lang_vec[lang]
         + rng.normal(size=(n, D_X)) * 0.8) * scales + common
    x = x.astype(np.float32)
    w = rng.normal(size=(D_X, D_Y)) / np.sqrt(D_X)
    y = (np.tanh(x.astype(np.float64) @ w) + rng.normal(size=(n, D_Y)) * 0.3).astype(np.float32)
    p = rng.normal(size=(D_Y, D_X)) / np.sqrt(D_X)
    u = unit_rows(x.astype(np.float64) @ p.T + rng.normal(size=(n, D_Y)) * 0.5).astype(np.float32)

    anchors = unit_rows(rng.normal(size=(K_ANCHORS, D_Y))).astype(np.float32)
    mean = y.astype(np.float64).mean(axis=0).astype(np.float32)
    t = unit_rows((y - mean).astype(np.float64))
    codes = np.argmax(t @ anchors.astype(np.float64).T, axis=1).astype(np.int32)
    agreement_u = float(np.mean(np.argmax(unit_rows(u.astype(np.float64)) @ anchors.T, axis=1) == codes))

    a = rng.normal(size=(M_SYM, M_SYM))
    sym = ((a + a.T) / 2).astype(np.float32)
    eig = np.linalg.eigvalsh(sym.astype(np.float64))

    steps = np.arange(S_LOG)
    loss = 3.0 * np.exp(-steps / 150.0) + 1.0 + rng.normal(size=S_LOG) * 0.02
    for s in (80, 170, 171, 300):                      # planted spikes (171 right after one)
        loss[s] += 1.5
    loss = loss.astype(np.float32)
    gnorm = (np.abs(rng.normal(size=S_LOG)) * 0.5 + 0.3).astype(np.float32)
    clipped = (gnorm > 1.0).astype(np.int32)
    spikes, cv, share = stability(loss, gnorm, clipped)

    erank, sv = effective_rank(x)
    knn_x, knn_y = knn_lists(x, KNN), knn_lists(y, KNN)
    overlap = float(np.mean([len(set(knn_x[i]) & set(knn_y[i])) / KNN for i in range(n)]))
    sil = float(silhouette_score(x, label, metric="cosine"))
    p1_per, p1_mean = p1(x, lang, group)
    tr_per, tr_mean = transfer(x, lang, label)

    meta = dict(n=n, d=D_X, D=D_Y, K=K_ANCHORS, G=G, L=L, m=M_SYM, S=S_LOG,
                erank_x=repr(erank), sv_x=floats(sv), anisotropy_x=repr(anisotropy(x)),
                cka_xy=repr(cka(x, y)), cka_uy=repr(cka(u, y)), knn_overlap_xy=repr(overlap),
                silhouette_x=repr(sil), p1_x=floats(p1_per), p1_x_mean=repr(p1_mean),
                transfer_x=floats(tr_per), transfer_x_mean=repr(tr_mean),
                agreement_u=repr(agreement_u), eig_sym=floats(eig), spikes=spikes,
                grad_norm_cv=repr(cv), clipped_share=repr(share))
    tensors = [("x", x), ("y", y), ("u", u), ("lang", lang), ("label", label), ("group", group),
               ("anchors", anchors), ("anchor_mean", mean), ("sym", sym), ("knn_x", knn_x),
               ("knn_y", knn_y), ("codes", codes), ("log_loss", loss), ("log_gnorm", gnorm),
               ("log_clipped", clipped)]
    write_safetensors(out_path, tensors, meta)
    print(f"{out_path}: erank {erank:.4f}, anisotropy {meta['anisotropy_x']}, CKA {meta['cka_xy']}, "
          f"overlap {overlap:.4f}, silhouette {sil:.4f}, P@1 {p1_mean:.4f}, transfer {tr_mean:.4f}, "
          f"agreement {agreement_u:.4f}, spikes {spikes}")


if __name__ == "__main__":
    main()
