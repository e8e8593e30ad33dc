#!/usr/bin/env python3
"""PyTorch reference for ecr's baseline regularisers, written independently of the C code.

Computes, in float64 with autograd, on small random float32 inputs:

  KD     logit distillation: log p_S = log_softmax(zs / T), log p_T = log_softmax(zt / T),
         loss = T^2 * mean over slots with target >= 0 of KL(p_T || p_S); gradient wrt zs.
  feat   u = F.normalize(h P^T), t^ = F.normalize(t), loss = mean over used texts of
         1 - <u_i, t^_i>; gradients wrt P and h.
  RKD    Park et al. 2019 ("Relational Knowledge Distillation"), following the structure of
         the authors' RkdDistance / RKdAngle: over the used texts, student x = u, teacher
         x = t^; pairwise distances (diagonal 0) divided by their mean over i != j,
         smooth_l1 (beta 1) averaged over all m^2 entries; angle cosines
         <normalize(x_j - x_i), normalize(x_k - x_i)> for all (i, j, k), smooth_l1 averaged
         over all m^3 entries; loss = 25 * distance + 50 * angle; gradients wrt P and h.

and writes tests/fixtures/baselines_ref.safetensors:

  kd.<c>.zs [N, V], kd.<c>.zt [N, V], kd.<c>.targets [N] I32 (-1 = no target),
      kd.<c>.loss [1], kd.<c>.dzs [N, V]                          (metadata kd_<c>_temp)
  feat.<c>.P [D, d], .h [n, d], .t [n, D], .used [n] I32, .loss [1], .dP, .dh
  rkd.<c>.P [D, d], .h [n, d], .t [n, D], .used [n] I32, .loss [1], .dist [1], .angle [1],
      .dP, .dh                                                     for c = 0, 1

Regenerate from the repository root (Debian's python3-torch; no network):

    /usr/bin/python3 tools/torch_ref_baselines.py [tests/fixtures/baselines_ref.safetensors]

The C test (tests/test_baselines.c) reads the fixture and needs no Python.
"""
import sys

import torch
import torch.nn.functional as F

from fixture_io import leaf, write_safetensors


def kd_loss(zs, zt, targets, temp):
    ls = F.log_softmax(zs / temp, dim=1)
    lt = F.log_softmax(zt / temp, dim=1)
    kl = (lt.exp() * (lt - ls)).sum(dim=1)
    used = targets >= 0
    return temp * temp * kl[used].mean()


def feat_loss(P, h, t, used):
    u = F.normalize(h @ P.T, dim=1, eps=1e-12)
    tn = F.normalize(t, dim=1, eps=1e-12)
    return (1.0 - (u * tn).sum(dim=1))[used].mean()


def pdist(e):
    """Pairwise Euclidean distances with a zero diagonal (and no NaN gradient there)."""
    m = e.shape[0]
    eye = torch.eye(m, dtype=torch.bool)
    sq = (e[:, None, :] - e[None, :, :]).pow(2).sum(dim=2).clamp(min=1e-24)
    return torch.where(eye, torch.zeros_like(sq), sq.sqrt())


def rkd_distance(s, t):
    m = s.shape[0]
    off = ~torch.eye(m, dtype=torch.bool)
    ds, dt = pdist(s), pdist(t)
    ds = ds / ds[off].mean()
    dt = dt / dt[off].mean()
    return F.smooth_l1_loss(ds, dt, reduction="mean")


def rkd_angles(e):
    d = e[None, :, :] - e[:, None, :]              # d[i, j] = e_j - e_i
    nd = F.normalize(d, p=2, dim=2, eps=1e-12)     # rows i == j stay 0
    return torch.bmm(nd, nd.transpose(1, 2))       # [i, j, k]: the angle at vertex i


def rkd_loss(P, h, t, used):
    u = F.normalize(h @ P.T, dim=1, eps=1e-12)[used]
    tn = F.normalize(t, dim=1, eps=1e-12)[used]
    dist = rkd_distance(u, tn)
    angle = F.smooth_l1_loss(rkd_angles(u), rkd_angles(tn), reduction="mean")
    return 25.0 * dist + 50.0 * angle, dist, angle


def main():
    out_path = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/baselines_ref.safetensors"
    gen = torch.Generator().manual_seed(20240613)
    out, meta = [], {"generator": "tools/torch_ref_baselines.py", "torch_version": torch.__version__}

    # KD: logits of scale ~3, a few slots without a target (padding).
    kd_cases = [(2.0, 10, 13, [3, 7]), (1.0, 8, 7, [0])]
    for c, (temp, N, V, no_target) in enumerate(kd_cases):
        zs32 = 3 * torch.randn((N, V), generator=gen)
        zt32 = 3 * torch.randn((N, V), generator=gen)
        targets = torch.randint(0, V, (N,), generator=gen, dtype=torch.int32)
        targets[no_target] = -1
        zs = leaf(zs32)
        loss = kd_loss(zs, zt32.double(), targets, temp)
        loss.backward()
        out += [(f"kd.{c}.zs", zs32), (f"kd.{c}.zt", zt32), (f"kd.{c}.targets", targets),
                (f"kd.{c}.loss", loss.detach().reshape(1).float()), (f"kd.{c}.dzs", zs.grad.float())]
        meta[f"kd_{c}_temp"] = temp

    # feat: one text left out; case 1 also has an all-zero teacher row (cosine 0).
    feat_cases = [(7, 5, 6, [2], None), (9, 4, 8, [0, 5], 3)]
    for c, (n, d, D, unused, zero_row) in enumerate(feat_cases):
        P32 = torch.randn((D, d), generator=gen) / d ** 0.5
        h32 = torch.randn((n, d), generator=gen)
        t32 = torch.randn((n, D), generator=gen)
        if zero_row is not None:
            t32[zero_row] = 0
        used = torch.ones(n, dtype=torch.int32)
        used[unused] = 0
        P, h = leaf(P32), leaf(h32)
        loss = feat_loss(P, h, t32.double(), used.bool())
        loss.backward()
        out += [(f"feat.{c}.P", P32), (f"feat.{c}.h", h32), (f"feat.{c}.t", t32), (f"feat.{c}.used", used),
                (f"feat.{c}.loss", loss.detach().reshape(1).float()),
                (f"feat.{c}.dP", P.grad.float()), (f"feat.{c}.dh", h.grad.float())]

    # RKD: case 0 random; case 1 a clustered teacher (3 tight clusters), so that some
    # normalised-distance and angle differences exceed 1 (the linear part of smooth-L1).
    rkd_cases = [(8, 5, 6, [3], False), (11, 6, 4, [1, 8], True)]
    for c, (n, d, D, unused, clustered) in enumerate(rkd_cases):
        P32 = torch.randn((D, d), generator=gen) / d ** 0.5
        h32 = torch.randn((n, d), generator=gen)
        if clustered:
            centres = torch.randn((3, D), generator=gen)
            t32 = centres[torch.arange(n) % 3] + 0.05 * torch.randn((n, D), generator=gen)
        else:
            t32 = torch.randn((n, D), generator=gen)
        used = torch.ones(n, dtype=torch.int32)
        used[unused] = 0
        P, h = leaf(P32), leaf(h32)
        loss, dist, angle = rkd_loss(P, h, t32.double(), used.bool())
        loss.backward()
        with torch.no_grad():
            u = F.normalize(h.detach() @ P.detach().T, dim=1)[used.bool()]
            tn = F.normalize(t32.double(), dim=1)[used.bool()]
            m = u.shape[0]
            off = ~torch.eye(m, dtype=torch.bool)
            ds, dt = pdist(u), pdist(tn)
            lin_d = ((ds / ds[off].mean() - dt / dt[off].mean()).abs() >= 1).sum().item()
            lin_a = ((rkd_angles(u) - rkd_angles(tn)).abs() >= 1).sum().item()
        print(f"rkd case {c}: m={m}, loss {loss.item():.6f} (distance {dist.item():.6f}, angle {angle.item():.6f}); "
              f"entries in the linear part of smooth-L1: {lin_d} distances, {lin_a} angles")
        out += [(f"rkd.{c}.P", P32), (f"rkd.{c}.h", h32), (f"rkd.{c}.t", t32), (f"rkd.{c}.used", used),
                (f"rkd.{c}.loss", loss.detach().reshape(1).float()),
                (f"rkd.{c}.dist", dist.detach().reshape(1).float()),
                (f"rkd.{c}.angle", angle.detach().reshape(1).float()),
                (f"rkd.{c}.dP", P.grad.float()), (f"rkd.{c}.dh", h.grad.float())]
        meta[f"rkd_{c}_linear_entries"] = f"{lin_d} distances, {lin_a} angles"
    write_safetensors(out_path, out, meta)
    print(f"wrote {out_path}: {len(out)} tensors")


if __name__ == "__main__":
    main()
