"""The shared-weight GPT of the matched ablation (METHOD.md §3), in MLX: the twin of model.py.

The configuration is model_config.GPTConfig, the very class model.py re-exports (imported, not
redefined; from model_config so that this module imports no torch). The parameter tree is
laid out so that `tree_flatten(model.parameters())` yields exactly the names and shapes of the
torch model's state dict (listed in model.py's docstring), with every Linear weight in the same
(out_features, in_features) layout (y = x @ W.T, as mlx.nn.Linear stores it). One `.npz`
therefore loads into either backend without any conversion; there is no layout difference.

Conventions copied from model.py (each one is checked against torch by tests/test_mlx_parity.py):
- rms_norm: weightless, eps 1e-6, computed in float32, returned in the input's dtype.
- heads contiguous in the projections; query head h reads KV head h // (num_heads // num_kv_heads)
  (the grouping of mx.fast.scaled_dot_product_attention with fewer KV heads).
- RoPE "rotate half" (mx.fast.rope, traditional=False), applied in float32.
- order: QK-norm -> RoPE -> per-head q gain; attention scale 1/sqrt(head_dim).
- XSA in float32; the tied output head and the softcap in float32.

Precision: the parameters are always float32 (the optimizer's master copy). `compute_dtype`
plays the role of torch's autocast: with bfloat16 the Linear layers (and everything between them
that autocast leaves in the low precision: attention, the MLP activation) run in bfloat16 while
the residual stream, norms, RoPE, XSA and the head stay float32, exactly where the torch model
keeps them under CUDA autocast. With float32 (the default, and the CPU setting) every cast is a
no-op.
"""

from __future__ import annotations

import math

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten, tree_unflatten

from meadow_golf.model.config import BIGRAM_MUL_CUR, BIGRAM_MUL_PREV, RMS_EPS, GPTConfig, optimizer_group

__all__ = ["GPT", "GPTConfig", "param_groups", "state_dict_numpy", "load_state_numpy", "rms_norm",
           "bigram_bucket_ids", "shift_right"]


# ----------------------------------------------------------------------------- helpers


def rms_norm(x: mx.array) -> mx.array:
    """Weightless RMSNorm over the last axis, computed in float32, returned in x's dtype."""
    return mx.fast.rms_norm(x.astype(mx.float32), None, RMS_EPS).astype(x.dtype)


def apply_rope(x: mx.array, base: float) -> mx.array:
    """Rotate-half RoPE on x of shape (B, H, T, hd), positions 0..T-1, done in float32."""
    rotated = mx.fast.rope(x.astype(mx.float32), x.shape[-1], traditional=False, base=base, scale=1.0, offset=0)
    return rotated.astype(x.dtype)


def bigram_bucket_ids(idx: mx.array, num_buckets: int) -> mx.array:
    """Hash bucket of each (previous, current) pair, as model.bigram_bucket_ids: position 0 sees
    the fake previous token num_buckets - 1.

    bucket_i = (36313 * t_i + 27191 * t_{i-1}) mod (num_buckets - 1). The multipliers are
    reduced mod (num_buckets - 1) first, which gives the same residue while keeping every product
    inside int32 (Metal has no fast int64) for any realistic vocabulary.
    """
    m = num_buckets - 1
    idx = idx.astype(mx.int32)
    prev = mx.concatenate([mx.full((idx.shape[0], 1), m, dtype=mx.int32), idx[:, :-1]], axis=1)
    cur = ((BIGRAM_MUL_CUR % m) * idx) % m
    return (cur + ((BIGRAM_MUL_PREV % m) * prev) % m) % m


def shift_right(x: mx.array) -> mx.array:
    """x of shape (B, T, C) shifted one position later along T, zeros at position 0."""
    return mx.pad(x[:, :-1], [(0, 0), (1, 0), (0, 0)])


# ----------------------------------------------------------------------------- modules


class Linear(nn.Linear):
    """nn.Linear without bias whose matmul runs in the input's dtype (autocast-like): the float32
    weight is cast to x's dtype, so a bfloat16 input gives a bfloat16 product."""

    def __init__(self, in_dims: int, out_dims: int):
        super().__init__(in_dims, out_dims, bias=False)

    def __call__(self, x: mx.array) -> mx.array:
        return x @ self.weight.astype(x.dtype).T


class BigramHash(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.num_buckets = config.bigram_buckets
        self.embed = nn.Embedding(config.bigram_buckets, config.bigram_dim)
        self.embed.weight = mx.zeros((config.bigram_buckets, config.bigram_dim))  # zero table
        self.proj = Linear(config.bigram_dim, config.model_dim)
        self.scale = mx.array(0.05)

    def __call__(self, idx: mx.array, dtype) -> mx.array:
        h = self.embed(bigram_bucket_ids(idx, self.num_buckets))
        return self.scale * self.proj(h.astype(dtype))


class SmearGate(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.gate = mx.zeros((dim,))

    def __call__(self, x: mx.array) -> mx.array:
        g = mx.sigmoid(self.gate).astype(x.dtype)
        return (1 - g) * x + g * shift_right(x)


class Attention(nn.Module):
    def __init__(self, config: GPTConfig, xsa: bool):
        super().__init__()
        self.num_heads = config.num_heads
        self.num_kv_heads = config.num_kv_heads
        self.head_dim = config.head_dim
        self.qk_norm = config.qk_norm
        self.rope_base = config.rope_base
        self.xsa = xsa
        d, kv_dim = config.model_dim, config.num_kv_heads * config.head_dim
        self.q = Linear(d, d)
        self.k = Linear(d, kv_dim)
        self.v = Linear(d, kv_dim)
        self.proj = Linear(d, d)
        self.proj.weight = mx.zeros((d, d))
        self.q_gain = mx.full((config.num_heads,), float(config.qk_gain_init))

    def head_outputs(self, x: mx.array, is_causal: bool) -> mx.array:
        """Per-head outputs (B, num_heads, T, head_dim), after XSA, before the output projection."""
        B, T, _ = x.shape
        q = self.q(x).reshape(B, T, self.num_heads, self.head_dim).transpose(0, 2, 1, 3)
        k = self.k(x).reshape(B, T, self.num_kv_heads, self.head_dim).transpose(0, 2, 1, 3)
        v = self.v(x).reshape(B, T, self.num_kv_heads, self.head_dim).transpose(0, 2, 1, 3)
        if self.qk_norm:
            q, k = rms_norm(q), rms_norm(k)
        q, k = apply_rope(q, self.rope_base), apply_rope(k, self.rope_base)
        q = q * self.q_gain.astype(q.dtype)[None, :, None, None]
        y = mx.fast.scaled_dot_product_attention(
            q, k, v, scale=1.0 / math.sqrt(self.head_dim), mask="causal" if is_causal else None)
        if self.xsa:
            y = self._remove_self_value(y, v)
        return y

    def _remove_self_value(self, y: mx.array, v: mx.array) -> mx.array:
        """XSA: y_i -= (y_i . v̂_i) v̂_i per head, v̂_i the unit value of token i in the head's KV
        group; float32; v̂ = v / max(|v|, 1e-12) like torch.nn.functional.normalize."""
        B, H, T, hd = y.shape
        y_grouped = y.astype(mx.float32).reshape(B, self.num_kv_heads, H // self.num_kv_heads, T, hd)
        vf = v.astype(mx.float32)
        norm = mx.sqrt(mx.sum(vf * vf, axis=-1, keepdims=True))
        v_unit = (vf / mx.maximum(norm, 1e-12))[:, :, None]  # (B, Hkv, 1, T, hd)
        y_grouped = y_grouped - mx.sum(y_grouped * v_unit, axis=-1, keepdims=True) * v_unit
        return y_grouped.reshape(B, H, T, hd).astype(y.dtype)

    def __call__(self, x: mx.array, is_causal: bool) -> mx.array:
        B, T, C = x.shape
        y = self.head_outputs(x, is_causal)
        return self.proj(y.transpose(0, 2, 1, 3).reshape(B, T, C))


class MLP(nn.Module):
    """down(leaky_relu(up(x), 0.5)^2)."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        hidden = config.mlp_mult * config.model_dim
        self.up = Linear(config.model_dim, hidden)
        self.down = Linear(hidden, config.model_dim)
        self.down.weight = mx.zeros((config.model_dim, hidden))

    def __call__(self, x: mx.array) -> mx.array:
        return self.down(mx.square(nn.leaky_relu(self.up(x), negative_slope=0.5)))


class Block(nn.Module):
    def __init__(self, config: GPTConfig, layer: int):
        super().__init__()
        self.attn = Attention(config, xsa=layer >= config.num_layers - config.xsa_last_n)
        self.mlp = MLP(config)
        self.attn_scale = mx.ones((config.model_dim,))
        self.mlp_scale = mx.ones((config.model_dim,))
        if config.resid_mix:
            self.resid_mix = mx.stack([mx.ones((config.model_dim,)), mx.zeros((config.model_dim,))])
        else:
            self.resid_mix = None  # a plain attribute, not a parameter
        self.input_scale = 1.0 / math.sqrt(layer + 1) if config.layer_scale else 1.0

    def __call__(self, x: mx.array, x0: mx.array, is_causal: bool, dtype) -> mx.array:
        if self.resid_mix is not None:
            x = self.resid_mix[0] * x + self.resid_mix[1] * x0
        x = x + self.attn_scale * self.attn((self.input_scale * rms_norm(x)).astype(dtype), is_causal)
        x = x + self.mlp_scale * self.mlp((self.input_scale * rms_norm(x)).astype(dtype))
        return x


class GPT(nn.Module):
    def __init__(self, config: GPTConfig, compute_dtype=mx.float32):
        super().__init__()
        self.config = config
        self.compute_dtype = compute_dtype
        d = config.model_dim
        # embed_rows = vocab_size (+1 for the mask token's input-only row, model_config.GPTConfig).
        self.tok_emb = nn.Embedding(config.embed_rows, d)
        self.tok_emb.weight = 0.005 * mx.random.normal((config.embed_rows, d))
        self.bigram = BigramHash(config) if config.bigram_dim > 0 else None
        self.smear = SmearGate(d) if config.smear_gate else None
        self.num_skips = config.num_layers // 2 if config.unet_skips else 0
        self.skip_weights = mx.ones((self.num_skips, d)) if self.num_skips > 0 else None
        self.blocks = [Block(config, layer) for layer in range(config.num_layers)]

    def num_params(self) -> int:
        """Number of distinct parameters (the tied embedding counted once)."""
        return sum(v.size for _, v in tree_flatten(self.parameters()))

    def __call__(self, idx: mx.array, is_causal: bool = True) -> mx.array:
        """Logits (B, T, vocab_size) in float32, softcapped. is_causal=False is the denoising pass."""
        cfg, dtype = self.config, self.compute_dtype
        x = self.tok_emb(idx)
        if self.bigram is not None:
            x = x + self.bigram(idx, dtype)
        x = rms_norm(x)
        if self.smear is not None:
            x = self.smear(x)
        x0 = x

        skips: list[mx.array] = []
        num_encoder = self.num_skips
        for i, block in enumerate(self.blocks):
            if i >= num_encoder and skips:
                x = x + self.skip_weights[i - num_encoder] * skips.pop()
            x = block(x, x0, is_causal, dtype)
            if i < num_encoder:
                skips.append(x)

        x = rms_norm(x).astype(mx.float32)
        # [:vocab_size]: the mask token's row (mask_token) is an input only, never a prediction.
        logits = x @ self.tok_emb.weight[: cfg.vocab_size].astype(mx.float32).T
        if cfg.logit_softcap > 0:
            logits = cfg.logit_softcap * mx.tanh(logits / cfg.logit_softcap)
        return logits


# ----------------------------------------------------------------------------- parameters


def param_groups(model: GPT) -> dict[str, list[str]]:
    """Flat parameter names per optimizer, by model.optimizer_group (the original's name-and-rank rule)."""
    groups: dict[str, list[str]] = {"muon": [], "embed": [], "scalar": []}
    for name, value in tree_flatten(model.parameters()):
        groups[optimizer_group(name, value.ndim)].append(name)
    return groups


def state_dict_numpy(model: nn.Module) -> dict[str, np.ndarray]:
    """float32 numpy copies of every parameter, keyed by the flat names shared with model.py."""
    return {name: np.array(v.astype(mx.float32)) for name, v in tree_flatten(model.parameters())}


def load_state_numpy(model: nn.Module, arrays: dict[str, np.ndarray]) -> None:
    """Strict load (same checks and message as model.load_state_numpy); float32 parameters."""
    state = {name: v.shape for name, v in tree_flatten(model.parameters())}
    missing = sorted(set(state) - set(arrays))
    unexpected = sorted(set(arrays) - set(state))
    mismatched = [
        f"{name}: model {tuple(state[name])} vs array {tuple(np.shape(arrays[name]))}"
        for name in sorted(set(state) & set(arrays))
        if tuple(state[name]) != tuple(np.shape(arrays[name]))
    ]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"missing keys {missing}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected}")
        if mismatched:
            parts.append(f"shape mismatches {mismatched}")
        raise ValueError("load_state_numpy: " + "; ".join(parts))
    model.update(tree_unflatten([(name, mx.array(np.asarray(arrays[name], dtype=np.float32))) for name in state]))
    mx.eval(model.parameters())
