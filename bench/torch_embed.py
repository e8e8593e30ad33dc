#!/usr/bin/env python3
"""PyTorch peer for bench/bench_embed.sh: the pooled hidden state h that `ecr embed --raw`
writes, computed by a plain-torch Llama forward (no transformers library) on the same
token ids, timed, checked against ecr's rows.

The model: a Hugging Face LlamaForCausalLM folder (config.json, model.safetensors with F32,
F16 or BF16 tensors, read with NumPy: 8-byte little-endian header length, JSON header, raw
little-endian data). RMSNorm, rotary attention with rotate_half (the Hugging Face layout),
SwiGLU; q/k/v and gate/up are each one product (their weights concatenated once at load,
as ecr stores them). No LM head: embeddings only.

The texts: the first N of ecr-prepared data (the file's `tokens` and `offsets`), each one
[EOT=0, t1..tk] with k = min(n, T-1) (T = max_position_embeddings, as ecr embed's default
--seq-len), positions 0..k; h = the mean of the final-norm output over slots 1..k (the
text's tokens, not the opening EOT), as include/ecr.h's ecr_forward_out.pooled says.

Batching (BATCHING):
  packed  ecr's own packing, replicated: rows of T slots, B = 4096 / T rows a forward pass
          (ecr embed's --batch-tokens default; EMBED_BATCH_TOKENS sets it), texts in file
          order, each row taking again and again the first of the next 64 waiting texts
          that still fits; attention block-diagonal and causal inside each text (a boolean
          mask; torch 1.13 has no fused attention), positions restarting per text, padding
          (id 1) attending to itself. The same slots as ecr, though the attention runs
          over whole rows, masked, where ecr's stays inside each text.
  padded  texts sorted by length (longest first), batches of up to 4096 slots (or
          EMBED_BATCH_TOKENS), each text padded to its batch's longest with a key-padding +
          causal mask: the idiomatic way with a Hugging Face style model, and less attention
          work than packed.

Timing: REPS passes over all N texts inside torch.inference_mode(), the model loaded and the
batches built beforehand (ecr embed's reported time likewise excludes loading); the whole
forward and pooling of every batch is timed. Prints one JSON line: best texts/s, every pass's
seconds, and, when ECR_H is given, the check of the fp32 rows against it (max abs diff, min
cosine).

usage: torch_embed.py MODEL_DIR DATA.safetensors N_TEXTS THREADS REPS fp32|bf16 packed|padded [ECR_H.npy]
bf16 runs the forward under torch.autocast("cpu", dtype=torch.bfloat16) (products in bf16,
fp32 weights). Run with LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp (else
torch's BLAS threads fight OpenMP)."""
import json
import math
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

EOT, PAD = 0, 1
WINDOW = 64          # ecr's packer lookahead (ecr_batcher_opts default)
BATCH_TOKENS = int(os.environ.get("EMBED_BATCH_TOKENS", "4096"))  # ecr embed --batch-tokens default


def read_safetensors(path, names=None):
    """{name: np.ndarray float32 (or the raw integer dtype)}; BF16/F16 widened to fp32."""
    out = {}
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n))
        base = 8 + n
        for name, e in hdr.items():
            if name == "__metadata__" or (names is not None and name not in names):
                continue
            b, end = e["data_offsets"]
            f.seek(base + b)
            raw = f.read(end - b)
            dt = e["dtype"]
            if dt == "BF16":
                a = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
            else:
                a = np.frombuffer(raw, {"F32": "<f4", "F16": "<f2", "U16": "<u2", "U32": "<u4", "I32": "<i4",
                                        "I64": "<i8"}[dt]).copy()
            out[name] = a.reshape(e["shape"])
    return out


def load_model(mdir):
    cfg = json.load(open(os.path.join(mdir, "config.json")))
    w = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32))
         for k, v in read_safetensors(os.path.join(mdir, "model.safetensors")).items()}
    L = cfg["num_hidden_layers"]
    layers = []
    for l in range(L):
        p = f"model.layers.{l}."
        layers.append({
            "ln1": w[p + "input_layernorm.weight"],
            "qkv": torch.cat([w[p + f"self_attn.{x}_proj.weight"] for x in "qkv"]).contiguous(),
            "o": w[p + "self_attn.o_proj.weight"],
            "ln2": w[p + "post_attention_layernorm.weight"],
            "gu": torch.cat([w[p + "mlp.gate_proj.weight"], w[p + "mlp.up_proj.weight"]]).contiguous(),
            "down": w[p + "mlp.down_proj.weight"],
        })
    return cfg, w["model.embed_tokens.weight"], layers, w["model.norm.weight"]


def rmsnorm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), -1)


def forward(model, x, pos, mask, pool):
    """x, pos [B, T] int64; mask [B, 1, T, T] bool (True = attend); pool = (slots, texts,
    weights): slot s of the flattened batch adds weights[i] times its output to text texts[i].
    Returns h [n_texts, d] fp32."""
    cfg, emb, layers, norm = model
    B, T = x.shape
    d, nh = cfg["hidden_size"], cfg["num_attention_heads"]
    hd, eps, theta = d // nh, cfg["rms_norm_eps"], cfg.get("rope_theta", 10000.0)
    inv = theta ** (-torch.arange(0, hd, 2, dtype=torch.float32) / hd)
    ang = pos[..., None].float() * inv
    ang = torch.cat((ang, ang), -1)[:, None]                        # [B, 1, T, hd]
    cos, sin = ang.cos(), ang.sin()
    h = F.embedding(x, emb)
    for lw in layers:
        a = rmsnorm(h, lw["ln1"], eps)
        q, k, v = F.linear(a, lw["qkv"]).view(B, T, 3, nh, hd).permute(2, 0, 3, 1, 4)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        att = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(hd))
        att = att.masked_fill(~mask, float("-inf")).softmax(-1)
        a = (att @ v).transpose(1, 2).reshape(B, T, d)
        h = h + F.linear(a, lw["o"])
        a = rmsnorm(h, lw["ln2"], eps)
        g, u = F.linear(a, lw["gu"]).chunk(2, -1)
        h = h + F.linear(F.silu(g) * u, lw["down"])
    slots, texts, wts, n = pool
    h = rmsnorm(h.float().reshape(B * T, d).index_select(0, slots), norm, eps) * wts[:, None]
    return torch.zeros(n, d).index_add_(0, texts, h)


def pack_ecr(lens, T):
    """ecr_batcher_sequential's batches: lists of rows, each a list of text indices."""
    B = max(1, BATCH_TOKENS // T)
    slots = [min(n, T - 1) + 1 for n in lens]
    nxt, wait, batches = 0, [], []
    while nxt < len(lens) or wait:
        rows = []
        for _ in range(B):
            used, row = 0, []
            while used < T:
                while len(wait) < WINDOW and nxt < len(lens):
                    wait.append(nxt)
                    nxt += 1
                i = next((j for j, t in enumerate(wait) if slots[t] <= T - used), None)
                if i is None:
                    break
                t = wait.pop(i)
                row.append(t)
                used += slots[t]
            rows.append(row)
        batches.append(rows)
    return batches


def pool_of(ps, pt, pw, n):
    return (torch.from_numpy(np.concatenate(ps)), torch.from_numpy(np.concatenate(pt).astype(np.int64)),
            torch.from_numpy(np.concatenate(pw)), n)


def make_batches(tokens, offsets, n_texts, T, mode):
    """[(x, pos, mask, pool, text ids)] ready to run."""
    lens = [int(offsets[i + 1] - offsets[i]) for i in range(n_texts)]
    ids = [tokens[offsets[i]:offsets[i] + min(lens[i], T - 1)] for i in range(n_texts)]
    out = []
    if mode == "packed":
        causal = torch.ones(T, T, dtype=torch.bool).tril()
        eye = torch.eye(T, dtype=torch.bool)
        for rows in pack_ecr(lens, T):
            B = len(rows)
            x = np.full((B, T), PAD, np.int64)
            pos = np.zeros((B, T), np.int64)
            tid = np.full((B, T), -1, np.int64)
            order = [t for row in rows for t in row]
            ps, pt, pw = [], [], []
            k = 0
            for r, row in enumerate(rows):
                s = 0
                for t in row:
                    n = len(ids[t]) + 1
                    x[r, s] = EOT
                    x[r, s + 1:s + n] = ids[t]
                    pos[r, s:s + n] = np.arange(n)
                    tid[r, s:s + n] = k
                    ps.append(np.arange(r * T + s + 1, r * T + s + n))
                    pt.append(np.full(n - 1, k))
                    pw.append(np.full(n - 1, 1.0 / (n - 1), np.float32))
                    s += n
                    k += 1
            tid_t = torch.from_numpy(tid)
            mask = ((tid_t[:, :, None] == tid_t[:, None, :]) & causal) | eye
            out.append((torch.from_numpy(x), torch.from_numpy(pos), mask[:, None].contiguous(),
                        pool_of(ps, pt, pw, len(order)), order))
    elif mode == "padded":
        order = sorted(range(n_texts), key=lambda t: -len(ids[t]))
        i = 0
        while i < n_texts:
            Tb = len(ids[order[i]]) + 1
            B = max(1, BATCH_TOKENS // Tb)
            grp = order[i:i + B]
            i += B
            x = np.full((len(grp), Tb), PAD, np.int64)
            valid = np.zeros((len(grp), Tb), bool)
            ps, pt, pw = [], [], []
            for r, t in enumerate(grp):
                n = len(ids[t]) + 1
                x[r, 0] = EOT
                x[r, 1:n] = ids[t]
                valid[r, :n] = True
                ps.append(np.arange(r * Tb + 1, r * Tb + n))
                pt.append(np.full(n - 1, r))
                pw.append(np.full(n - 1, 1.0 / (n - 1), np.float32))
            pos = torch.arange(Tb).expand(len(grp), Tb).contiguous()
            v = torch.from_numpy(valid)
            mask = (v[:, None, :] & torch.ones(Tb, Tb, dtype=torch.bool).tril()) | torch.eye(Tb, dtype=torch.bool)
            out.append((torch.from_numpy(x), pos, mask[:, None].contiguous(), pool_of(ps, pt, pw, len(grp)), grp))
    else:
        sys.exit(f"torch_embed.py: batching {mode!r}: expected packed or padded")
    return out


def main():
    mdir, data, n_texts, threads, reps, prec, mode = sys.argv[1:8]
    ref = sys.argv[8] if len(sys.argv) > 8 else None
    n_texts, threads, reps = int(n_texts), int(threads), int(reps)
    if prec not in ("fp32", "bf16"):
        sys.exit(f"torch_embed.py: precision {prec!r}: expected fp32 or bf16")
    torch.set_num_threads(threads)
    model = load_model(mdir)
    T = model[0]["max_position_embeddings"]
    st = read_safetensors(data, {"tokens", "offsets"})
    tokens, offsets = st["tokens"].astype(np.int64), st["offsets"]
    n_texts = min(n_texts, len(offsets) - 1)
    batches = make_batches(tokens, offsets, n_texts, T, mode)
    H = torch.zeros(n_texts, model[0]["hidden_size"])
    times = []
    with torch.inference_mode():
        for _ in range(reps):
            t0 = time.perf_counter()
            for x, pos, mask, pool, order in batches:
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=prec == "bf16"):
                    h = forward(model, x, pos, mask, pool)
                H[order] = h.float()
            times.append(time.perf_counter() - t0)
    res = {"precision": prec, "batching": mode, "threads": threads, "texts": n_texts, "batches": len(batches),
           "slots": int(sum(b[0].numel() for b in batches)), "seconds": times,
           "texts_per_s": n_texts / min(times)}
    if ref:
        e = np.load(ref)[:n_texts].astype(np.float64)
        t = H.numpy().astype(np.float64)
        cos = (e * t).sum(1) / (np.linalg.norm(e, axis=1) * np.linalg.norm(t, axis=1))
        res.update(max_abs_diff=float(np.abs(e - t).max()), max_abs_ecr=float(np.abs(e).max()),
                   min_cosine=float(cos.min()))
    print(json.dumps(res))


if __name__ == "__main__":
    main()
