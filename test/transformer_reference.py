"""Independent, loop-and-matmul re-statement of the release's transformer computation (design/momask.md
§3.2 / §4.2), used by test_masked.py and test_residual.py to check the modules against the spec.

It reads only a state dict, so it also pins the key names.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _layer_norm(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, eps: float) -> torch.Tensor:
    mu = x.mean(-1, keepdim=True)
    var = x.var(-1, unbiased=False, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * w + b


def _attention(h: torch.Tensor, sd: dict, p: str, heads: int, key_padding: torch.Tensor) -> torch.Tensor:
    b, n, d = h.shape
    qkv = h @ sd[p + "self_attn.in_proj_weight"].T + sd[p + "self_attn.in_proj_bias"]
    q, k, v = qkv.split(d, dim=-1)
    hd = d // heads

    def split(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(b, n, heads, hd).transpose(1, 2)

    scores = split(q) @ split(k).transpose(-1, -2) / math.sqrt(hd)
    scores = scores.masked_fill(key_padding[:, None, None, :], float("-inf"))
    out = (scores.softmax(-1) @ split(v)).transpose(1, 2).reshape(b, n, d)
    return out @ sd[p + "self_attn.out_proj.weight"].T + sd[p + "self_attn.out_proj.bias"]


def encoder_and_head(
    sd: dict, prefix: list[torch.Tensor], x: torch.Tensor, padding: torch.Tensor, *, num_layers: int, heads: int
) -> torch.Tensor:
    """x: (b, n, d) motion features BEFORE PE; prefix: list of (b, d) tokens. Returns head output (b, n, out)."""
    n = x.shape[1]
    x = x + sd["position_enc.pe"][:n, 0]  # PE on motion tokens only
    h = torch.cat([t.unsqueeze(1) for t in prefix] + [x], dim=1)
    key_padding = torch.cat([torch.zeros(x.shape[0], len(prefix), dtype=torch.bool), padding], dim=1)
    for i in range(num_layers):
        p = f"seqTransEncoder.layers.{i}."
        attn = _attention(h, sd, p, heads, key_padding)
        h = _layer_norm(h + attn, sd[p + "norm1.weight"], sd[p + "norm1.bias"], 1e-5)
        ff = F.gelu(h @ sd[p + "linear1.weight"].T + sd[p + "linear1.bias"]) @ sd[p + "linear2.weight"].T
        h = _layer_norm(h + ff + sd[p + "linear2.bias"], sd[p + "norm2.weight"], sd[p + "norm2.bias"], 1e-5)
    h = h[:, len(prefix):]
    h = F.gelu(h @ sd["output_process.dense.weight"].T + sd["output_process.dense.bias"])
    h = _layer_norm(h, sd["output_process.LayerNorm.weight"], sd["output_process.LayerNorm.bias"], 1e-12)
    return h @ sd["output_process.poseFinal.weight"].T + sd["output_process.poseFinal.bias"]


def linear(sd: dict, name: str, x: torch.Tensor) -> torch.Tensor:
    return x @ sd[name + ".weight"].T + sd[name + ".bias"]
