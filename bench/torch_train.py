#!/usr/bin/env python3
"""PyTorch peer for bench/bench_train.sh: trains the same Llama-style model as `ecr train`
(RMSNorm, rotary attention with rotate_half, SwiGLU, tied LM head, fp32) on the same
prepared data with the same batch shape, AdamW, warmup-free constant lr and gradient
clipping, and prints one JSON line: steps, seconds of the timed steps, token slots/s.
PRECISION bf16 runs the forward under torch.autocast("cpu", dtype=torch.bfloat16), the
mixed precision PyTorch offers on CPUs (products in bf16, fp32 master weights).

Packed batches as in ecr: each text is [EOT, t1..tn] -> [t1..tn, EOT], several texts per
row, attention block-diagonal and causal inside each text (a boolean mask, the idiomatic
way in torch 1.13, which has no fused attention), positions restarting per text.

usage: torch_train.py DATA.safetensors PRESET STEPS THREADS [TOKENS_PER_STEP] [WARMUP] [fp32|bf16]
Run with LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp (else torch's BLAS
threads fight OpenMP)."""
import json
import math
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

PRESETS = {"tiny": (128, 2, 4, 352), "small": (256, 4, 4, 704), "base": (384, 6, 6, 1024)}


def read_prepared(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n))
        base = 8 + n
        out = {}
        for name in ("tokens", "offsets"):
            e = hdr[name]
            b, end = e["data_offsets"]
            f.seek(base + b)
            dt = {"U16": np.uint16, "U32": np.uint32, "I64": np.int64}[e["dtype"]]
            out[name] = np.frombuffer(f.read(end - b), dtype=dt)
        return out["tokens"].astype(np.int64), out["offsets"], int(hdr["__metadata__"]["vocab_size"])


def make_batches(tokens, offsets, B, T, steps, seed=1):
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(offsets) - 1)
    k = 0
    batches = []
    for _ in range(steps):
        x = np.ones((B, T), np.int64)          # pad id 1
        y = np.full((B, T), -100, np.int64)
        pos = np.zeros((B, T), np.int64)
        tid = np.full((B, T), -1, np.int64)
        for r in range(B):
            t = 0
            while True:
                i = order[k % len(order)]
                ids = tokens[offsets[i]:offsets[i + 1]][: T - 1]
                n = len(ids) + 1
                if t + n > T:
                    break
                x[r, t] = 0
                x[r, t + 1:t + n] = ids
                y[r, t:t + n - 1] = ids
                y[r, t + n - 1] = 0
                pos[r, t:t + n] = np.arange(n)
                tid[r, t:t + n] = k
                t += n
                k += 1
        batches.append(tuple(torch.from_numpy(a) for a in (x, y, pos, tid)))
    return batches


class RMSNorm(torch.nn.Module):
    def __init__(self, d, eps=1e-5):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.w


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), -1)


class Block(torch.nn.Module):
    def __init__(self, d, nh, hid):
        super().__init__()
        self.nh = nh
        self.n1, self.n2 = RMSNorm(d), RMSNorm(d)
        self.q, self.k, self.v, self.o = (torch.nn.Linear(d, d, bias=False) for _ in range(4))
        self.g, self.u = torch.nn.Linear(d, hid, bias=False), torch.nn.Linear(d, hid, bias=False)
        self.dn = torch.nn.Linear(hid, d, bias=False)

    def forward(self, x, cos, sin, mask):
        B, T, d = x.shape
        hd = d // self.nh
        h = self.n1(x)
        q, k, v = (p(h).view(B, T, self.nh, hd).transpose(1, 2) for p in (self.q, self.k, self.v))
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        att = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
        att = att.masked_fill(~mask, float("-inf")).softmax(-1)
        a = (att @ v).transpose(1, 2).reshape(B, T, d)
        x = x + self.o(a)
        h = self.n2(x)
        return x + self.dn(F.silu(self.g(h)) * self.u(h))


class Model(torch.nn.Module):
    def __init__(self, V, d, L, nh, hid):
        super().__init__()
        self.emb = torch.nn.Embedding(V, d)
        self.blocks = torch.nn.ModuleList(Block(d, nh, hid) for _ in range(L))
        self.norm = RMSNorm(d)
        self.hd = d // nh
        for p in self.parameters():
            if p.dim() == 2:
                torch.nn.init.normal_(p, 0.0, 0.02)

    def forward(self, x, y, pos, tid):
        B, T = x.shape
        inv = 10000.0 ** (-torch.arange(0, self.hd, 2, dtype=torch.float32) / self.hd)
        ang = pos[..., None].float() * inv                      # [B, T, hd/2]
        ang = torch.cat((ang, ang), -1)[:, None]                 # [B, 1, T, hd]
        cos, sin = ang.cos(), ang.sin()
        causal = torch.ones(T, T, dtype=torch.bool).tril()
        mask = (tid[:, :, None] == tid[:, None, :]) & causal     # [B, T, T]
        mask = mask | torch.eye(T, dtype=torch.bool)             # padding rows attend to themselves
        mask = mask[:, None]
        h = self.emb(x)
        for blk in self.blocks:
            h = blk(h, cos, sin, mask)
        logits = self.norm(h) @ self.emb.weight.t()
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), y.view(-1), ignore_index=-100)


def main():
    path, preset, steps, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    tps = int(sys.argv[5]) if len(sys.argv) > 5 else 4096
    warm = int(sys.argv[6]) if len(sys.argv) > 6 else 2
    prec = sys.argv[7] if len(sys.argv) > 7 else "fp32"
    if prec not in ("fp32", "bf16"):
        sys.exit(f"torch_train.py: precision {prec!r}: expected fp32 or bf16")
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    tokens, offsets, V = read_prepared(path)
    T = 256
    B = tps // T
    d, L, nh, hid = PRESETS[preset]
    model = Model(V, d, L, nh, hid)
    decay = [p for n, p in model.named_parameters() if p.dim() == 2 and not n.startswith("emb")]
    other = [p for n, p in model.named_parameters() if not (p.dim() == 2 and not n.startswith("emb"))]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": other, "weight_decay": 0.0}], lr=1e-3, betas=(0.9, 0.95))
    batches = make_batches(tokens, offsets, B, T, warm + steps)
    t0 = None
    for i, b in enumerate(batches):
        if i == warm:
            t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=prec == "bf16"):
            loss = model(*b)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    dt = time.perf_counter() - t0
    print(json.dumps({"precision": prec, "steps": steps, "seconds": dt, "slots_per_s": steps * B * T / dt,
                      "loss": float(loss), "params": sum(p.numel() for p in model.parameters())}))


if __name__ == "__main__":
    main()
