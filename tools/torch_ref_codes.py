#!/usr/bin/env python3
"""PyTorch reference for ecr's codes-only variants of ECR, written independently of the C code
from the contracts in src/method/losses.h ("codes-only variants of ECR").

Computes, in float64 with autograd, on small random float32 inputs. The student rows are
x_i = F.normalize(h_i P^T) (space "u", with a projection P [D, d]) or x_i = F.normalize(h_i)
(space "h", no projection; D = d); F.normalize's eps 1e-12 throughout.

  rel    relational consistency: over the m used texts, s = x x^T, S = t^ t^T with
         t^ = F.normalize(t) (t [n, Dt], Dt free: only its Gram matrix is used),
         loss = sum_{i != j} (s_ij - S_ij)^2 / (m (m - 1))   (0 when m < 2);
         gradients wrt P (space u) and h; the rows of h of unused texts get none.
  con    code-contrastive: group_i = code_i for used texts, -1 for the others, whose rows
         are x_i = 0 (a constant: negatives only, no gradient). The rows then go through the
         symmetric multi-positive in-batch InfoNCE of tools/torch_ref_losses.py (which
         normalises its input rows once more: identity at unit norm, kept to mirror the
         C composition): s_ik = <x_i, x_k> / tau, P(i) = {j != i : group_j == group_i >= 0},
         loss_i = -mean_{j in P(i)} log(exp(s_ij) / sum_{k != i} exp(s_ik)),
         loss = mean over the anchors (texts with P(i) non-empty; 0 when there is none);
         gradients wrt P (space u) and h. In space h the fixture's unused rows of h are 0.
  orth   ||P^T P - I||_F^2 / d and its gradient wrt P.

and writes tests/fixtures/codes_ref.safetensors:

  rel.<c>.P [D, d] (space u only), rel.<c>.h [n, d], rel.<c>.t [n, Dt], rel.<c>.used [n] I32,
      rel.<c>.loss [1], rel.<c>.dP [D, d] (space u only), rel.<c>.dh [n, d]
      (metadata rel_<c>_space = u | h, rel_<c>_n_used)
  con.<c>.P [D, d] (space u only), con.<c>.h [n, d], con.<c>.code [n] I32,
      con.<c>.used [n] I32, con.<c>.loss [1], con.<c>.dP [D, d] (space u only),
      con.<c>.dh [n, d]
      (metadata con_<c>_space = u | h, con_<c>_tau, con_<c>_n_anchor)
  for c = 0 (space u) and c = 1 (space h);
  orth.<c>.P [D, d], orth.<c>.loss [1], orth.<c>.dP [D, d]: orthogonality of the projection,
      loss = ||P^T P - I||_F^2 / d; c = 0 a random P, c = 1 a P near an isometry.
  mres.P [D, d], mres.h [n, d], mres.used [n] I32, mres.A<r> [K_r, D], mres.code<r> [n] I32
      (r = 0, 1), mres.loss [1], mres.dP, mres.dh (metadata mres_tau): multi-resolution codes,
      the sum over the sets of ECR's mean KL over the used texts, u = normalize(h P^T),
      q_i = softmax(A u_i / tau), target Pi[code_i] with Pi = row-softmax(A A^T / tau).

Regenerate from the repository root (Debian's python3-torch; no network):

    /usr/bin/python3 tools/torch_ref_codes.py [tests/fixtures/codes_ref.safetensors]

The C test (tests/test_codes.c) reads the fixture and needs no Python.
"""
import sys

import torch
import torch.nn.functional as F

from fixture_io import leaf, write_safetensors


def student_rows(P, h):
    """x = normalize(h P^T) (space u) or normalize(h) (space h, P is None)."""
    z = h if P is None else h @ P.T
    return F.normalize(z, dim=1, eps=1e-12)


def rel_loss(P, h, t, used):
    x = student_rows(P, h)[used]
    tn = F.normalize(t, dim=1, eps=1e-12)[used]
    m = x.shape[0]
    if m < 2:
        return (x.sum() * 0.0)
    off = ~torch.eye(m, dtype=torch.bool)
    diff = (x @ x.T - tn @ tn.T)[off]
    return diff.pow(2).sum() / (m * (m - 1))


def infonce(x, group, tau):
    """The in-batch InfoNCE of losses.h on rows x (normalised here again); also |A|."""
    x = F.normalize(x, dim=1, eps=1e-12)
    n = x.shape[0]
    eye = torch.eye(n, dtype=torch.bool)
    s = (x @ x.T / tau).masked_fill(eye, float("-inf"))
    logp = s - torch.logsumexp(s, dim=1, keepdim=True)
    pos = (group[:, None] == group[None, :]) & (group[:, None] >= 0) & ~eye
    has = pos.any(dim=1)
    if not has.any():
        return x.sum() * 0.0, 0
    loss_i = -(logp.masked_fill(~pos, 0.0).sum(dim=1)) / pos.sum(dim=1).clamp(min=1)
    return loss_i[has].mean(), int(has.sum().item())


def con_loss(P, h, code, used, tau):
    x = student_rows(P, h)
    x = torch.where(used[:, None], x, torch.zeros_like(x))     # unused: x_i = 0, constant
    group = torch.where(used, code, torch.full_like(code, -1))
    return infonce(x, group, tau)


def orth_loss(P):
    d = P.shape[1]
    M = P.T @ P - torch.eye(d, dtype=P.dtype)
    return (M * M).sum() / d


def mres_loss(P, h, sets, used, tau):
    """Sum over the sets (A [K, D], code [n]) of ECR's mean KL(Pi[code_i] || q_i) over the used
    texts: u = normalize(h P^T), q_i = softmax(A u_i / tau), Pi = row-softmax(A A^T / tau)."""
    u = student_rows(P, h)[used]
    total = u.sum() * 0.0
    for A, code in sets:
        logq = F.log_softmax(u @ A.T / tau, dim=1)
        Pi = F.softmax(A @ A.T / tau, dim=1)[code[used].long()]
        total = total + (Pi * (torch.log(Pi) - logq)).sum(dim=1).mean()
    return total


def used_mask(n, unused):
    used = torch.ones(n, dtype=torch.int32)
    used[unused] = 0
    return used


def main():
    out_path = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/codes_ref.safetensors"
    gen = torch.Generator().manual_seed(20240614)
    out, meta = [], {"generator": "tools/torch_ref_codes.py", "torch_version": torch.__version__}

    # rel: case 0 in space u (D 6 != Dt 4), random targets, one text left out; case 1 in space h
    # (Dt 5 != d 6) with targets in 3 tight clusters (the anchors of shared codes), two texts
    # left out.
    rel_cases = [("u", 7, 5, 6, 4, [2], None), ("h", 9, 6, 6, 5, [1, 6], [0, 1, 2, 0, 1, 2, 2, 0, 1])]
    for c, (space, n, d, D, Dt, unused, codes) in enumerate(rel_cases):
        P32 = torch.randn((D, d), generator=gen) / d ** 0.5 if space == "u" else None
        h32 = torch.randn((n, d), generator=gen)
        if codes is None:
            t32 = torch.randn((n, Dt), generator=gen)
        else:
            centres = torch.randn((3, Dt), generator=gen)
            t32 = centres[torch.tensor(codes)] + 0.05 * torch.randn((n, Dt), generator=gen)
        used = used_mask(n, unused)
        h = leaf(h32)
        P = leaf(P32) if P32 is not None else None
        loss = rel_loss(P, h, t32.double(), used.bool())
        loss.backward()
        assert h.grad[used == 0].abs().max().item() == 0.0
        if P is not None:
            out += [(f"rel.{c}.P", P32)]
        out += [(f"rel.{c}.h", h32), (f"rel.{c}.t", t32), (f"rel.{c}.used", used),
                (f"rel.{c}.loss", loss.detach().reshape(1).float())]
        if P is not None:
            out += [(f"rel.{c}.dP", P.grad.float())]
        out += [(f"rel.{c}.dh", h.grad.float())]
        meta[f"rel_{c}_space"] = space
        meta[f"rel_{c}_n_used"] = int(used.sum().item())
        print(f"rel case {c} (space {space}): m={int(used.sum())} of {n}, loss {loss.item():.6f}")

    # con: positives within codes, a used text whose code is unique (no anchor), an unused text
    # that takes the only positive of another used text away (that one is then no anchor
    # either). Case 0 in space u (tau 0.1); case 1 in space h (tau 0.5), h loosely clustered by
    # code, the unused text's row of h all zero.
    con_cases = [("u", 0.1, 5, 6, [3, 1, 3, 7, 1, 3, 2, 7], [7]),
                 ("h", 0.5, 6, 6, [0, 4, 0, 2, 4, 4, 9, 2, 0, 4], [3])]
    for c, (space, tau, d, D, codes, unused) in enumerate(con_cases):
        n = len(codes)
        tau32 = float(torch.tensor(tau, dtype=torch.float32))  # the float the C loss receives
        code = torch.tensor(codes, dtype=torch.int32)
        used = used_mask(n, unused)
        P32 = torch.randn((D, d), generator=gen) / d ** 0.5 if space == "u" else None
        if space == "u":
            h32 = torch.randn((n, d), generator=gen)
        else:
            centres = torch.randn((10, d), generator=gen)
            h32 = centres[code.long()] + 0.7 * torch.randn((n, d), generator=gen)
            h32[used == 0] = 0
        h = leaf(h32)
        P = leaf(P32) if P32 is not None else None
        loss, n_anchor = con_loss(P, h, code, used.bool(), tau32)
        loss.backward()
        assert h.grad[used == 0].abs().max().item() == 0.0
        if P is not None:
            out += [(f"con.{c}.P", P32)]
        out += [(f"con.{c}.h", h32), (f"con.{c}.code", code), (f"con.{c}.used", used),
                (f"con.{c}.loss", loss.detach().reshape(1).float())]
        if P is not None:
            out += [(f"con.{c}.dP", P.grad.float())]
        out += [(f"con.{c}.dh", h.grad.float())]
        meta[f"con_{c}_space"] = space
        meta[f"con_{c}_tau"] = tau
        meta[f"con_{c}_n_anchor"] = n_anchor
        print(f"con case {c} (space {space}, tau {tau}): {n_anchor} anchors of {n} texts, loss {loss.item():.6f}")
    # orth: ||P^T P - I||_F^2 / d for a random P (case 0, D > d) and a P near an isometry
    # (case 1: orthonormal columns plus a small perturbation)
    for c, (D, d) in enumerate([(7, 4), (6, 5)]):
        P32 = torch.randn((D, d), generator=gen) / d ** 0.5
        if c == 1:
            q, _ = torch.linalg.qr(torch.randn((D, d), generator=gen, dtype=torch.float64))
            P32 = (q + 0.05 * torch.randn((D, d), generator=gen, dtype=torch.float64)).float()
        P = leaf(P32)
        loss = orth_loss(P)
        loss.backward()
        out += [(f"orth.{c}.P", P32), (f"orth.{c}.loss", loss.detach().reshape(1).float()),
                (f"orth.{c}.dP", P.grad.float())]
        print(f"orth case {c} (D {D}, d {d}): loss {loss.item():.6f}")
    # mres: two further anchor sets (K 4 and 9, unit rows) with their own codes, tau 0.1, one
    # text without tokens (code -1 in every set: left out of each mean)
    n, d, D, tau = 7, 5, 6, 0.1
    tau32 = float(torch.tensor(tau, dtype=torch.float32))
    P32 = torch.randn((D, d), generator=gen) / d ** 0.5
    h32 = torch.randn((n, d), generator=gen)
    used = used_mask(n, [4])
    sets = []
    for K in (4, 9):
        A32 = F.normalize(torch.randn((K, D), generator=gen), dim=1)
        code = torch.randint(0, K, (n,), generator=gen, dtype=torch.int32)
        sets.append((A32, code))
    P, h = leaf(P32), leaf(h32)
    loss = mres_loss(P, h, [(A.double(), c) for A, c in sets], used.bool(), tau32)
    loss.backward()
    assert h.grad[used == 0].abs().max().item() == 0.0
    out += [("mres.P", P32), ("mres.h", h32), ("mres.used", used)]
    for r, (A32, code) in enumerate(sets):
        out += [(f"mres.A{r}", A32), (f"mres.code{r}", code)]
    out += [("mres.loss", loss.detach().reshape(1).float()), ("mres.dP", P.grad.float()),
            ("mres.dh", h.grad.float())]
    meta["mres_tau"] = tau
    print(f"mres (K 4 and 9, tau {tau}): loss {loss.item():.6f}")
    write_safetensors(out_path, out, meta)
    print(f"wrote {out_path}: {len(out)} tensors")


if __name__ == "__main__":
    main()
