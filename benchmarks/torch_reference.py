"""A short PyTorch (eager) OpenELM, the baseline the training benchmark measures against.

Written from docs/openelm.md (pre-norm blocks, fused QKV, q/k RMSNorm before rotate-half RoPE,
repeat-interleaved GQA, SwiGLU with the gate first, tied head). Loads elmjax parameters so
both frameworks run the same weights; `check_against_elmjax` compares their logits.
Benchmark-only code: nothing in the package imports it.
"""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from elmjax.model.schedule import layer_schedule


def rms(x, w, eps):
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype) * w.to(x.dtype)


class Block(nn.Module):
    def __init__(self, m, spec):
        super().__init__()
        d, hd = m.model_dim, m.head_dim
        self.nq, self.nkv, self.hd, self.eps = spec.num_query_heads, spec.num_kv_heads, hd, m.norm_eps
        self.qkv = nn.Parameter(torch.empty(d, (self.nq + 2 * self.nkv) * hd))
        self.out = nn.Parameter(torch.empty(self.nq * hd, d))
        self.q_norm, self.k_norm = nn.Parameter(torch.ones(hd)), nn.Parameter(torch.ones(hd))
        self.attn_norm, self.ffn_norm = nn.Parameter(torch.ones(d)), nn.Parameter(torch.ones(d))
        self.proj_1 = nn.Parameter(torch.empty(d, 2 * spec.ffn_dim))
        self.proj_2 = nn.Parameter(torch.empty(spec.ffn_dim, d))

    def forward(self, x, cos, sin):
        b, t, _ = x.shape
        qkv = (rms(x, self.attn_norm, self.eps) @ self.qkv.to(x.dtype)).view(b, t, -1, self.hd)
        q, k, v = qkv.split([self.nq, self.nkv, self.nkv], dim=2)
        q, k = rms(q, self.q_norm, self.eps), rms(k, self.k_norm, self.eps)

        def rope(z):
            zf = z.float()
            z1, z2 = zf.chunk(2, dim=-1)
            return torch.cat([z1 * cos - z2 * sin, z2 * cos + z1 * sin], -1).to(z.dtype)

        q, k = rope(q).transpose(1, 2), rope(k).transpose(1, 2)
        v = v.transpose(1, 2)
        k = k.repeat_interleave(self.nq // self.nkv, dim=1)
        v = v.repeat_interleave(self.nq // self.nkv, dim=1)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        h = x + a.transpose(1, 2).reshape(b, t, -1) @ self.out.to(x.dtype)
        gate, up = (rms(h, self.ffn_norm, self.eps) @ self.proj_1.to(x.dtype)).chunk(2, dim=-1)
        return h + (F.silu(gate) * up) @ self.proj_2.to(x.dtype)


class OpenELM(nn.Module):
    """tokens [b, t] -> float32 logits [b, t, vocab]; weights as elmjax lays them out ([in, out])."""

    def __init__(self, m, dtype=torch.float32):
        super().__init__()
        self.m, self.dtype = m, dtype
        self.emb = nn.Parameter(torch.empty(m.vocab_size, m.model_dim))
        self.blocks = nn.ModuleList(Block(m, s) for s in layer_schedule(m))
        self.norm = nn.Parameter(torch.ones(m.model_dim))

    def forward(self, tokens):
        t = tokens.shape[1]
        inv = 1.0 / (self.m.rope_freq_constant ** (torch.arange(0, self.m.head_dim, 2).float() / self.m.head_dim))
        ang = torch.arange(t).float()[:, None] * inv
        cos, sin = ang.cos()[None, :, None], ang.sin()[None, :, None]
        x = self.emb[tokens].to(self.dtype)
        for blk in self.blocks:
            x = blk(x, cos, sin)
        return (rms(x, self.norm, self.m.norm_eps) @ self.emb.to(self.dtype).T).float()

    def load_elmjax(self, params):
        def put(p, x):
            p.data.copy_(torch.from_numpy(np.asarray(x, np.float32)))

        put(self.emb, params["token_embeddings"])
        put(self.norm, params["norm"]["scale"])
        for i, blk in enumerate(self.blocks):
            lp = params[f"layers_{i}"]
            put(blk.qkv, lp["attn"]["qkv_proj"]["kernel"])
            put(blk.out, lp["attn"]["out_proj"]["kernel"])
            put(blk.q_norm, lp["attn"]["q_norm"]["scale"])
            put(blk.k_norm, lp["attn"]["k_norm"]["scale"])
            put(blk.attn_norm, lp["attn_norm"]["scale"])
            put(blk.ffn_norm, lp["ffn_norm"]["scale"])
            put(blk.proj_1, lp["ffn"]["proj_1"]["kernel"])
            put(blk.proj_2, lp["ffn"]["proj_2"]["kernel"])
        return self


def check_against_elmjax(cfg, params, tokens) -> float:
    """Largest |logit difference| between this reference and elmjax on the same weights."""
    import elmjax

    ref = OpenELM(cfg.model).load_elmjax(params)
    with torch.no_grad():
        theirs = ref(torch.from_numpy(np.asarray(tokens)).long()).numpy()
    ours = np.asarray(elmjax.forward(cfg, params, tokens))
    return float(np.abs(ours - theirs).max())
