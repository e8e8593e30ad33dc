#!/usr/bin/env python3
"""PyTorch reference for ecr's training losses, written independently of the C code.

Computes, in float64 with autograd, on small random float32 inputs:

  InfoNCE   symmetric, multi-positive, in-batch: x = F.normalize(h), s = x x^T / tau,
            the diagonal excluded from each row's softmax; for every text i with at least
            one positive (another text of its group; group -1 = none):
            loss_i = -mean_{j in P(i)} log_softmax(s_i)_j; the loss is the mean over those i.
  ECR       z = h P^T, u = F.normalize(z), log q = log_softmax(u A^T / tau);
            hard target  pi_i = softmax(A A^T / tau)[code_i];
            soft target  pi_i = softmax(soft_sim_i / tau) scattered on soft_idx_i;
            loss = mean over texts with code >= 0 of KL(pi_i || q_i).

and writes tests/fixtures/losses_ref.safetensors:

  nce.<c>.h [n, d] F32, nce.<c>.group [n] I32,  nce.<c>.loss [1], nce.<c>.dh [n, d]
      for the cases c = 0, 1 (metadata nce_<c>_tau)
  ecr.<c>.P [D, d], ecr.<c>.h [n, d], ecr.<c>.A [K, D] (unit rows), ecr.<c>.code [n] I32
      (-1 = left out), ecr.<c>.soft_idx [n, M] I32, ecr.<c>.soft_sim [n, M],
      ecr.<c>.Pi [K, K], ecr.<c>.hard.loss [1], .hard.dP, .hard.dh,
      ecr.<c>.soft.loss [1], .soft.dP, .soft.dh      for c = 0, 1 (metadata ecr_<c>_tau)

Regenerate from the repository root (Debian's python3-torch; no network):

    /usr/bin/python3 tools/torch_ref_losses.py [tests/fixtures/losses_ref.safetensors]

The C test (tests/test_losses.c) reads the fixture and needs no Python.
"""
import sys

import torch
import torch.nn.functional as F

from fixture_io import leaf, write_safetensors


def infonce(h, group, tau):
    x = F.normalize(h, dim=1, eps=1e-12)
    n = h.shape[0]
    eye = torch.eye(n, dtype=torch.bool)
    s = (x @ x.T / tau).masked_fill(eye, float("-inf"))
    logp = s - torch.logsumexp(s, dim=1, keepdim=True)
    pos = (group[:, None] == group[None, :]) & (group[:, None] >= 0) & ~eye
    has = pos.any(dim=1)
    loss_i = -(logp.masked_fill(~pos, 0.0).sum(dim=1)) / pos.sum(dim=1).clamp(min=1)
    return loss_i[has].mean()


def ecr_targets(A, code, tau, soft_idx=None, soft_sim=None):
    K = A.shape[0]
    n = code.shape[0]
    if soft_idx is None:
        Pi = torch.softmax(A @ A.T / tau, dim=1)
        return Pi[code.clamp(min=0).long()]
    pi = torch.zeros(n, K, dtype=A.dtype)
    pi.scatter_(1, soft_idx.long(), torch.softmax(soft_sim / tau, dim=1))
    return pi


def ecr_loss(P, h, A, code, tau, soft_idx=None, soft_sim=None):
    z = h @ P.T
    u = F.normalize(z, dim=1, eps=1e-12)
    logq = torch.log_softmax(u @ A.T / tau, dim=1)
    pi = ecr_targets(A, code, tau, soft_idx, soft_sim)
    plogp = torch.where(pi > 0, pi * torch.log(torch.where(pi > 0, pi, torch.ones_like(pi))),
                        torch.zeros_like(pi))
    kl = (plogp - pi * logq).sum(dim=1)
    used = code >= 0
    return kl[used].mean()


def main():
    out_path = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/losses_ref.safetensors"
    gen = torch.Generator().manual_seed(20240612)
    out, meta = [], {"generator": "tools/torch_ref_losses.py", "torch_version": torch.__version__}

    # InfoNCE: a 3-text group (several positives), pairs, a singleton group and a text
    # without a group (negatives only). Case 1 has a larger n and temperature.
    nce_cases = [
        (0.05, [0, 0, 1, 1, 1, -1, 2, 3, 3]),
        (0.3, [4, 1, 1, 0, 4, 0, 2, 2, 2, -1, 3, 1]),
    ]
    for c, (tau, groups) in enumerate(nce_cases):
        n, d = len(groups), 6 + 2 * c
        h32 = torch.randn((n, d), generator=gen)
        group = torch.tensor(groups, dtype=torch.int32)
        h = leaf(h32)
        loss = infonce(h, group, tau)
        loss.backward()
        out += [(f"nce.{c}.h", h32), (f"nce.{c}.group", group),
                (f"nce.{c}.loss", loss.detach().reshape(1).float()),
                (f"nce.{c}.dh", h.grad.float())]
        meta[f"nce_{c}_tau"] = tau

    # ECR: K anchors (unit rows) in D dims, n texts of d dims, M soft codes per text taken
    # like `ecr anchors --soft`: the M most similar anchors of a teacher-like vector.
    ecr_cases = [(0.05, 7, 6, 5, 9, 3), (0.3, 10, 8, 6, 12, 4)]
    for c, (tau, n, d, D, K, M) in enumerate(ecr_cases):
        A32 = F.normalize(torch.randn((K, D), generator=gen), dim=1)
        P32 = torch.randn((D, d), generator=gen) / d ** 0.5
        h32 = torch.randn((n, d), generator=gen)
        t = F.normalize(torch.randn((n, D), generator=gen), dim=1)
        sims = t.double() @ A32.double().T
        top = torch.topk(sims, M, dim=1)
        soft_idx = top.indices.to(torch.int32)
        soft_sim = top.values.float()
        code = soft_idx[:, 0].clone()
        code[2] = -1  # one text left out of the mean
        A = A32.double()
        out += [(f"ecr.{c}.P", P32), (f"ecr.{c}.h", h32), (f"ecr.{c}.A", A32),
                (f"ecr.{c}.code", code), (f"ecr.{c}.soft_idx", soft_idx),
                (f"ecr.{c}.soft_sim", soft_sim),
                (f"ecr.{c}.Pi", torch.softmax(A @ A.T / tau, dim=1).float())]
        for kind in ("hard", "soft"):
            P, h = leaf(P32), leaf(h32)
            if kind == "hard":
                loss = ecr_loss(P, h, A, code, tau)
            else:
                loss = ecr_loss(P, h, A, code, tau, soft_idx, soft_sim.double())
            loss.backward()
            out += [(f"ecr.{c}.{kind}.loss", loss.detach().reshape(1).float()),
                    (f"ecr.{c}.{kind}.dP", P.grad.float()),
                    (f"ecr.{c}.{kind}.dh", h.grad.float())]
        meta[f"ecr_{c}_tau"] = tau
    write_safetensors(out_path, out, meta)
    print(f"wrote {out_path}: {len(out)} tensors")


if __name__ == "__main__":
    main()
