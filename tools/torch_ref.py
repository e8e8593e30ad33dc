#!/usr/bin/env python3
"""PyTorch reference for ecr's model, written independently of the C code.

Builds the Hugging Face LlamaForCausalLM architecture in float64 (RMSNorm, rotary
embeddings with rotate_half, SwiGLU, tied or untied LM head), runs it on a packed batch
(several texts per row, block-diagonal causal mask, per-text positions, padding) and
writes tests/fixtures/model_ref.safetensors with:

  metadata      the config (vocab_size, dim, n_layers, n_heads, hidden_dim, max_seq_len,
                rope_theta, norm_eps, ecr_dim), B, T, n_texts, lm_scale, and the AdamW
                settings (adam_lr_0..2, adam_beta1, adam_beta2, adam_eps, adam_wd,
                clip_norm)
  batch.*       tokens, targets, pos, text                                   I32 [B*T]
  param.<name>  initial parameters (float32 draws; the reference computes in float64)
  untied.lm_head  the separate LM head of the untied variant
  dpooled       [n_texts, dim]  the pooled-embedding gradient term
  dlogits       [B*T, V]        the logits gradient term (untied variant only)
  tied.*        logits, loss, pooled, text_loss, grad.<name> for
                L = lm_scale * mean CE + sum(dpooled * pooled)            (tied head)
  untied.*      the same with an untied head and L += sum(dlogits * logits)
  dpooled_mid   [n_texts, dim]  the gradient term of the intermediate pooling
  mid.*         pooled_mid (the residual stream after block 1, pooled as h, no norm) and
                grad.<name> for the tied L + sum(dpooled_mid * pooled_mid)
  adam.gnorm    [3] gradient norms before clipping, tied variant, steps 1..3
  adam.<name>   tied parameters after 3 steps of torch.optim.AdamW (decay group:
                q/k/v/o, gate/up/down, ecr.proj; no decay: norms, embeddings), each step
                on the same batch and loss, gradients clipped with clip_grad_norm_

Regenerate (from the repository root; only Debian's python3-torch and numpy are needed,
no network; the fixture is tiny, so OpenBLAS threading does not matter):

    /usr/bin/python3 tools/torch_ref.py [tests/fixtures/model_ref.safetensors]

(Prefix LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp only if you want torch's
BLAS to run multi-threaded; it changes nothing here.) The output is deterministic for a
given torch version; the C test (tests/test_model.c, tests/test_optim.c) reads it and needs
no Python.
"""
import math
import sys

import torch
import torch.nn.functional as F

from fixture_io import leaf, write_safetensors

CFG = dict(vocab_size=80, dim=24, n_layers=2, n_heads=3, hidden_dim=64, max_seq_len=32,
           rope_theta=10000.0, norm_eps=1e-5, ecr_dim=8)
B, T = 3, 16
LM_SCALE = 0.7
ADAM = dict(lrs=[1e-2, 8e-3, 6e-3], beta1=0.9, beta2=0.95, eps=1e-8, wd=0.1, clip=0.5)


def param_shapes(cfg, tied):
    """(name, shape) in the order of ecr's tensor table."""
    d, h, V = cfg["dim"], cfg["hidden_dim"], cfg["vocab_size"]
    out = [("model.embed_tokens.weight", (V, d))]
    for l in range(cfg["n_layers"]):
        p = f"model.layers.{l}."
        out += [(p + "input_layernorm.weight", (d,)),
                (p + "self_attn.q_proj.weight", (d, d)),
                (p + "self_attn.k_proj.weight", (d, d)),
                (p + "self_attn.v_proj.weight", (d, d)),
                (p + "self_attn.o_proj.weight", (d, d)),
                (p + "post_attention_layernorm.weight", (d,)),
                (p + "mlp.gate_proj.weight", (h, d)),
                (p + "mlp.up_proj.weight", (h, d)),
                (p + "mlp.down_proj.weight", (d, h))]
    out.append(("model.norm.weight", (d,)))
    if not tied:
        out.append(("lm_head.weight", (V, d)))
    if cfg["ecr_dim"] > 0:
        out.append(("ecr.proj.weight", (cfg["ecr_dim"], d)))
    return out


def make_batch(gen):
    """Rows packed with texts [EOT, t1..tn] -> targets [t1..tn, EOT]; padding: token 1,
    target -1, text -1, pos 0. Row 0 ends exactly full; row 2 has a one-token text."""
    plan = [[5, 3, 5],        # 6 + 4 + 6 = 16 slots: full row
            [7, 2],           # 8 + 3 = 11 slots, 5 padding
            [1, 9, 2]]        # 2 + 10 + 3 = 15 slots, 1 padding
    V = CFG["vocab_size"]
    tokens = torch.ones(B, T, dtype=torch.int32)
    targets = torch.full((B, T), -1, dtype=torch.int32)
    pos = torch.zeros(B, T, dtype=torch.int32)
    text = torch.full((B, T), -1, dtype=torch.int32)
    n = 0
    for r, lens in enumerate(plan):
        col = 0
        for ln in lens:
            ids = torch.randint(2, V, (ln,), generator=gen, dtype=torch.int32)
            seq_in = torch.cat([torch.zeros(1, dtype=torch.int32), ids])
            seq_tg = torch.cat([ids, torch.zeros(1, dtype=torch.int32)])
            tokens[r, col:col + ln + 1] = seq_in
            targets[r, col:col + ln + 1] = seq_tg
            pos[r, col:col + ln + 1] = torch.arange(ln + 1, dtype=torch.int32)
            text[r, col:col + ln + 1] = n
            n += 1
            col += ln + 1
        assert col <= T
    return tokens, targets, pos, text, n


def init_params(gen, tied):
    """float32 draws (stored as they are; the C test loads the same values)."""
    ps = {}
    for name, shape in param_shapes(CFG, tied):
        if len(shape) == 1:
            ps[name] = 1.0 + 0.1 * torch.randn(shape, generator=gen)
        else:
            ps[name] = 0.3 * torch.randn(shape, generator=gen)
    return ps


def rmsnorm(x, w, eps):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def pool(x, pos, text, n_texts):
    """Mean of x over each text's slots with pos >= 1."""
    return torch.stack([x[(text == i) & (pos >= 1)].mean(0) for i in range(n_texts)])


def forward(p, tokens, pos, text, n_texts, tied, mid=None):
    """Returns logits [B, T, V], pooled [n_texts, d] (and, with mid = l, the pooled residual
    stream after block l, before any norm)."""
    cfg = CFG
    d, H = cfg["dim"], cfg["n_heads"]
    hd = d // H
    x = p["model.embed_tokens.weight"][tokens.long()]                     # [B, T, d]
    inv_freq = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    freqs = pos.double()[..., None] * inv_freq                            # [B, T, hd/2]
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos()[:, None], emb.sin()[:, None]                     # [B, 1, T, hd]
    same = (text[:, :, None] == text[:, None, :]) & (text[:, :, None] >= 0)
    causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
    eye = torch.eye(T, dtype=torch.bool)
    allowed = (same & causal) | eye                                       # padding: itself
    for l in range(cfg["n_layers"]):
        pre = f"model.layers.{l}."
        hn = rmsnorm(x, p[pre + "input_layernorm.weight"], cfg["norm_eps"])
        q = (hn @ p[pre + "self_attn.q_proj.weight"].T).view(B, T, H, hd).transpose(1, 2)
        k = (hn @ p[pre + "self_attn.k_proj.weight"].T).view(B, T, H, hd).transpose(1, 2)
        v = (hn @ p[pre + "self_attn.v_proj.weight"].T).view(B, T, H, hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        s = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
        s = s.masked_fill(~allowed[:, None], float("-inf"))
        a = torch.softmax(s, dim=-1) @ v                                  # [B, H, T, hd]
        a = a.transpose(1, 2).reshape(B, T, d)
        x = x + a @ p[pre + "self_attn.o_proj.weight"].T
        hn = rmsnorm(x, p[pre + "post_attention_layernorm.weight"], cfg["norm_eps"])
        g = hn @ p[pre + "mlp.gate_proj.weight"].T
        u = hn @ p[pre + "mlp.up_proj.weight"].T
        x = x + (F.silu(g) * u) @ p[pre + "mlp.down_proj.weight"].T
        if mid == l + 1:
            pooled_mid = pool(x, pos, text, n_texts)
    xf = rmsnorm(x, p["model.norm.weight"], cfg["norm_eps"])
    head = p["model.embed_tokens.weight"] if tied else p["lm_head.weight"]
    logits = xf @ head.T
    if mid is not None:
        return logits, pool(xf, pos, text, n_texts), pooled_mid
    return logits, pool(xf, pos, text, n_texts)


def objective(p, batch, tied, dpooled, dlogits):
    tokens, targets, pos, text, n = batch
    logits, pooled = forward(p, tokens, pos, text, n, tied)
    V = CFG["vocab_size"]
    ce = F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1).long(), ignore_index=-1,
                         reduction="none")
    loss = ce.sum() / (targets >= 0).sum()
    text_loss = torch.stack([ce[(text.reshape(-1) == i)].sum() for i in range(n)])
    total = LM_SCALE * loss + (dpooled * pooled).sum()
    if dlogits is not None:
        total = total + (dlogits * logits.reshape(-1, V)).sum()
    return total, loss, logits, pooled, text_loss


def as_leaf64(ps):
    return {k: leaf(v) for k, v in ps.items()}


def main():
    out_path = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/model_ref.safetensors"
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(20240611)
    batch = make_batch(gen)
    tokens, targets, pos, text, n_texts = batch
    init = init_params(gen, tied=True)
    lm_head = 0.3 * torch.randn((CFG["vocab_size"], CFG["dim"]), generator=gen)
    dpooled32 = torch.randn((n_texts, CFG["dim"]), generator=gen)
    dlogits32 = 0.05 * torch.randn((B * T, CFG["vocab_size"]), generator=gen)
    dpooled, dlogits = dpooled32.double(), dlogits32.double()
    dmid32 = torch.randn((n_texts, CFG["dim"]), generator=gen)  # drawn last: the rest unchanged

    out = [("batch.tokens", tokens.reshape(-1)), ("batch.targets", targets.reshape(-1)),
           ("batch.pos", pos.reshape(-1)), ("batch.text", text.reshape(-1))]
    out += [("param." + k, v) for k, v in init.items()]
    out += [("untied.lm_head", lm_head), ("dpooled", dpooled32), ("dlogits", dlogits32)]

    for tied in (True, False):
        pre = "tied" if tied else "untied"
        ps = dict(init)
        if not tied:
            ps["lm_head.weight"] = lm_head
        p = as_leaf64(ps)
        total, loss, logits, pooled, text_loss = objective(p, batch, tied, dpooled,
                                                           None if tied else dlogits)
        total.backward()
        out += [(pre + ".logits", logits.reshape(-1, CFG["vocab_size"]).float()),
                (pre + ".loss", loss.reshape(1).float()),
                (pre + ".pooled", pooled.float()),
                (pre + ".text_loss", text_loss.float())]
        for name, _ in param_shapes(CFG, tied):
            g = p[name].grad if p[name].grad is not None else torch.zeros_like(p[name])
            out.append((pre + ".grad." + name, g.float()))

    # the intermediate pooling (the "mid" term's input): tied, L += sum(dpooled_mid * pooled_mid)
    # with pooled_mid the residual stream after block 1, pooled
    p = as_leaf64(init)
    logits, pooled, pooled_mid = forward(p, tokens, pos, text, n_texts, True, mid=1)
    V = CFG["vocab_size"]
    ce = F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1).long(), ignore_index=-1)
    total = LM_SCALE * ce + (dpooled * pooled).sum() + (dmid32.double() * pooled_mid).sum()
    total.backward()
    out += [("dpooled_mid", dmid32), ("mid.pooled_mid", pooled_mid.float())]
    for name, _ in param_shapes(CFG, True):
        g = p[name].grad if p[name].grad is not None else torch.zeros_like(p[name])
        out.append(("mid.grad." + name, g.float()))

    # three AdamW steps on the tied model, same batch and loss each step
    p = as_leaf64(init)
    decay = [v for k, v in p.items() if v.dim() == 2 and k != "model.embed_tokens.weight"]
    no_decay = [v for k, v in p.items() if not (v.dim() == 2 and k != "model.embed_tokens.weight")]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": ADAM["wd"]},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=ADAM["lrs"][0], betas=(ADAM["beta1"], ADAM["beta2"]),
                            eps=ADAM["eps"])
    gnorms = []
    for lr in ADAM["lrs"]:
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad()
        total = objective(p, batch, True, dpooled, None)[0]
        total.backward()
        for v in p.values():  # unused tensors (ecr.proj) get a zero gradient, as in ecr
            if v.grad is None:
                v.grad = torch.zeros_like(v)
        gn = torch.nn.utils.clip_grad_norm_(list(p.values()), ADAM["clip"])
        gnorms.append(float(gn))
        opt.step()
    out.append(("adam.gnorm", torch.tensor(gnorms, dtype=torch.float32)))
    out += [("adam." + k, v.detach().float()) for k, v in p.items()]

    meta = dict(CFG)
    meta.update(B=B, T=T, n_texts=n_texts, lm_scale=LM_SCALE, adam_beta1=ADAM["beta1"],
                adam_beta2=ADAM["beta2"], adam_eps=ADAM["eps"], adam_wd=ADAM["wd"],
                clip_norm=ADAM["clip"], torch_version=torch.__version__,
                generator="tools/torch_ref.py")
    for i, lr in enumerate(ADAM["lrs"]):
        meta[f"adam_lr_{i}"] = lr
    write_safetensors(out_path, out, meta)
    print(f"wrote {out_path}: {len(out)} tensors, grad norms {gnorms}")


if __name__ == "__main__":
    main()
