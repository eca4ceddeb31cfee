"""The shared-weight GPT of the matched ablation (METHOD.md §3), in PyTorch.

One set of parameters serves two modes: the causal next-token pass and the bidirectional
denoising pass. The ONLY difference between them is the `is_causal` flag handed to attention;
BigramHash and SmearGate look at the previous position in both modes (in the denoising pass
that position may hold a corrupted token, which is exactly the input the model is given).

Forward pass, for tokens idx of shape (B, T):
    x  = tok_emb(idx) + bigram.scale * bigram.proj(bigram.embed(hash(idx)))
    x  = smear(rms_norm(x));  x0 = x
    for each block (U-Net: the first L//2 push, the later ones pop and add skip_weights[i] * skip):
        x = m0 * x + m1 * x0                                    (resid_mix)
        x = x + attn_scale * attn(s * rms_norm(x))              (s = 1/sqrt(layer + 1))
        x = x + mlp_scale  * mlp(s * rms_norm(x))
    logits = softcap(rms_norm(x) @ tok_emb.weight.T)           (float32)

Parameter names and layouts (the contract shared with the checkpoint format and the MLX twin):
    tok_emb.weight                 (vocab_size, model_dim)         tied input/output embedding
                                   (vocab_size + 1 rows with mask_token: row vocab_size is the
                                   absorbing-noise mask, an input only; the head reads [:vocab_size])
    bigram.embed.weight            (bigram_buckets, bigram_dim)    zero-init hash table
    bigram.proj.weight             (model_dim, bigram_dim)
    bigram.scale                   ()                              init 0.05
    smear.gate                     (model_dim,)                    init 0 -> sigmoid = 0.5
    skip_weights                   (num_layers // 2, model_dim)    init 1
    blocks.{i}.resid_mix           (2, model_dim)                  rows [m0, m1], init [1, 0]
    blocks.{i}.attn_scale          (model_dim,)                    init 1
    blocks.{i}.mlp_scale           (model_dim,)                    init 1
    blocks.{i}.attn.q.weight       (model_dim, model_dim)
    blocks.{i}.attn.k.weight       (num_kv_heads * head_dim, model_dim)
    blocks.{i}.attn.v.weight       (num_kv_heads * head_dim, model_dim)
    blocks.{i}.attn.proj.weight    (model_dim, model_dim)          zero-init
    blocks.{i}.attn.q_gain         (num_heads,)                    init qk_gain_init
    blocks.{i}.mlp.up.weight       (mlp_mult * model_dim, model_dim)
    blocks.{i}.mlp.down.weight     (model_dim, mlp_mult * model_dim)  zero-init
Every Linear weight is in torch's (out_features, in_features) layout: y = x @ W.T. No biases.
Components switched off in the config have no parameters at all (their keys are absent).
There are no buffers in the state dict: the RoPE tables are a non-persistent buffer (made at init
for ROPE_CACHE_LEN positions, computed on the fly beyond), never saved or loaded.

Conventions a second backend must reproduce exactly:
- rms_norm(x) = x * rsqrt(mean(x^2, last axis) + 1e-6), computed in float32, no weight.
- Heads are laid out contiguously in the projections: q head h is rows [h*hd, (h+1)*hd) of
  attn.q.weight; query head h reads KV head h // (num_heads // num_kv_heads).
- RoPE is the "rotate half" form (mx.fast.rope with traditional=False): for a head vector split
  into halves (x1, x2) and frequency theta_j = base^(-2j/hd) at position p,
  (x1, x2) -> (x1*cos - x2*sin, x1*sin + x2*cos), angle p*theta_j.
- q and k are RMS-normed per head, then rotated, then q is multiplied by its per-head gain;
  attention uses the default 1/sqrt(head_dim) scale.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from meadow_golf.model.config import (  # noqa: F401  (re-exported: `from model import GPTConfig` and friends)
    BIGRAM_MUL_CUR, BIGRAM_MUL_PREV, EMBED_PARAM, MUON_EXCLUDED_NAME_PARTS, PRESETS, RMS_EPS, GPTConfig,
    optimizer_group,
)

# Positions whose RoPE tables are precomputed. Precomputed, because a compiled model otherwise
# recomputes cos/sin inside the q/k kernels of every layer, forward and backward (those kernels
# were 23% of an 11L step's kernel time on an H200, perf/h200/profile_11L_ar.log); a longer
# sequence still works, its tables computed per forward.
ROPE_CACHE_LEN = 4096

# enable_gqa appeared in scaled_dot_product_attention in torch 2.5; older versions get an
# explicit repeat of the KV heads instead (same result).
_TORCH_MAJOR_MINOR = tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2])
_SDPA_HAS_GQA = _TORCH_MAJOR_MINOR >= (2, 5)


# ----------------------------------------------------------------------------- helpers


def rms_norm(x: torch.Tensor) -> torch.Tensor:
    """Weightless RMSNorm over the last axis, computed in float32 (bf16-safe), returned in x's dtype."""
    xf = x.float()
    if xf.device.type == "cpu" and torch.is_grad_enabled() and xf.requires_grad:
        return _RMSNormCPU.apply(xf, xf).to(x.dtype)
    return (xf * torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + RMS_EPS)).to(x.dtype)


class _RMSNormCPU(torch.autograd.Function):
    """rms_norm's float32 math with a hand-written backward, for eager CPU training.

    Autograd's backward of the five-op composite makes about ten full-size passes and temporaries
    (the mean's expanded gradient, pow's 2*x, the broadcast product's reduction); this one makes
    six, and keeps only x and the per-row rsqrt. Each expression is the one autograd evaluates,
    in its order, so the gradient is the same bit for bit:
        MulBackward (x * r):  g * r,  and sum(g * x) for r
        RsqrtBackward:        (-0.5 * grad) * r^3
        MeanBackward:         grad / n, broadcast (dividing before or after the broadcast is the same)
        PowBackward (x^2):    grad * (2 * x)
    x comes in twice (the product's operand, then the square's) and each gets its own term back:
    the engine then adds them to x's other gradients (the residual branch's, which arrives first)
    one at a time, in the composite's order, so even the sum is rounded as before.
    CUDA keeps the composite: there torch.compile fuses it into one kernel anyway.
    """

    @staticmethod
    def forward(ctx, x_mul, x_sq):
        r = torch.rsqrt(x_sq.pow(2).mean(dim=-1, keepdim=True) + RMS_EPS)
        ctx.save_for_backward(x_mul, r)
        return x_mul * r

    @staticmethod
    def backward(ctx, g):
        xf, r = ctx.saved_tensors
        grad_r = (g * xf).sum(dim=-1, keepdim=True)
        grad_mean = (-0.5 * grad_r) * r.pow(3) / xf.size(-1)
        return g * r, grad_mean * (2 * xf)


def rope_cos_sin(seq_len: int, head_dim: int, base: float, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables of shape (seq_len, head_dim // 2), float32.

    Position p's row does not depend on seq_len, so a prefix of a longer table is the table of a
    shorter sequence (GPT keeps one of ROPE_CACHE_LEN rows as a non-persistent buffer).
    """
    inv_freq = base ** (-torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(seq_len, device=device, dtype=torch.float32), inv_freq)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate-half RoPE on x of shape (..., hd) whose positions broadcast against cos/sin (the
    (T, hd/2) tables, or (T, 1, hd/2) for x laid out (B, T, H, hd)); the rotation is done in float32."""
    half = x.size(-1) // 2
    xf = x.float()
    # x * [cos, cos] + [x2, x1] * [-sin, sin]: per element the same two products and one sum as
    # (x1 cos - x2 sin, x1 sin + x2 cos) (a - b == a + (-b) exactly), so the same bits, in fewer
    # passes and without the full-size zero tensors the backward of the half slices allocates.
    cos_full, sin_signed = torch.cat((cos, cos), dim=-1), torch.cat((-sin, sin), dim=-1)
    return (xf * cos_full + xf.roll(half, dims=-1) * sin_signed).to(x.dtype)


def bigram_bucket_ids(idx: torch.Tensor, num_buckets: int) -> torch.Tensor:
    """Hash bucket of each (previous, current) token pair, as the original computes it.

    bucket_i = (36313 * t_i + 27191 * t_{i-1}) mod (num_buckets - 1), where position 0 sees the
    fake previous token num_buckets - 1. With 2048 buckets that previous token is 2047, and
    27191 * 2047 = 0 mod 2047, so bucket_0 = (36313 * t_0) mod 2047: position 0 shares the
    buckets of every other position, and the last row of the table is never read.
    """
    idx = idx.long()  # int64: the products cannot overflow for any realistic vocabulary
    prev = torch.cat([torch.full_like(idx[..., :1], num_buckets - 1), idx[..., :-1]], dim=-1)
    return (BIGRAM_MUL_CUR * idx + BIGRAM_MUL_PREV * prev) % (num_buckets - 1)


def shift_right(x: torch.Tensor) -> torch.Tensor:
    """x of shape (B, T, C) shifted one position later along T, zeros at position 0."""
    return F.pad(x[:, :-1], (0, 0, 1, 0))


# ----------------------------------------------------------------------------- modules


class BigramHash(nn.Module):
    """A learned embedding of the hashed (previous, current) token pair, added to tok_emb."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.num_buckets = config.bigram_buckets
        self.embed = nn.Embedding(config.bigram_buckets, config.bigram_dim)
        self.proj = nn.Linear(config.bigram_dim, config.model_dim, bias=False)
        self.scale = nn.Parameter(torch.tensor(0.05))
        # Zero table: the model starts as if there were no bigram term. The projection keeps its
        # default (nonzero) init, otherwise neither factor would ever receive a gradient.
        nn.init.zeros_(self.embed.weight)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.scale * self.proj(self.embed(bigram_bucket_ids(idx, self.num_buckets)))


class SmearGate(nn.Module):
    """Mix each position with the previous one, per channel: x = (1-g)*x + g*x_prev, g = sigmoid(gate)."""

    def __init__(self, dim: int):
        super().__init__()
        self.gate = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = torch.sigmoid(self.gate).to(x.dtype)
        return (1 - g) * x + g * shift_right(x)


class Attention(nn.Module):
    """GQA self-attention with QK-norm, RoPE, a per-head query gain and optional XSA."""

    def __init__(self, config: GPTConfig, xsa: bool):
        super().__init__()
        self.num_heads = config.num_heads
        self.num_kv_heads = config.num_kv_heads
        self.head_dim = config.head_dim
        self.qk_norm = config.qk_norm
        self.xsa = xsa
        d, kv_dim = config.model_dim, config.num_kv_heads * config.head_dim
        self.q = nn.Linear(d, d, bias=False)
        self.k = nn.Linear(d, kv_dim, bias=False)
        self.v = nn.Linear(d, kv_dim, bias=False)
        self.proj = nn.Linear(d, d, bias=False)
        self.q_gain = nn.Parameter(torch.full((config.num_heads,), float(config.qk_gain_init)))
        nn.init.zeros_(self.proj.weight)  # each block starts as the identity on the residual stream

    def head_outputs(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, is_causal: bool,
                     causal_rows: int = 0) -> torch.Tensor:
        """Per-head attention outputs (B, num_heads, T, head_dim), after XSA, before the output projection.

        Rows [:causal_rows] attend causally whatever is_causal says (see GPT.forward)."""
        B, T, _ = x.shape
        # Norm, rotation and gain act on each (position, head) vector alone, so they run in the
        # projections' own (B, T, heads, hd) layout, contiguous, and the head axis moves after:
        # the same values bit for bit, in fewer and faster elementwise passes on CPU.
        q = self.q(x).view(B, T, self.num_heads, self.head_dim)
        k = self.k(x).view(B, T, self.num_kv_heads, self.head_dim)
        v = self.v(x).view(B, T, self.num_kv_heads, self.head_dim).transpose(1, 2)
        if self.qk_norm:
            q, k = rms_norm(q), rms_norm(k)
        cos_t, sin_t = cos[:, None], sin[:, None]  # (T, 1, hd/2): broadcast over the head axis
        q, k = apply_rope(q, cos_t, sin_t), apply_rope(k, cos_t, sin_t)
        q = (q * self.q_gain.to(q.dtype)[None, None, :, None]).transpose(1, 2)
        k = k.transpose(1, 2)

        if 0 < causal_rows < B:
            # Fused joint step: one batch holds the causal rows first, then the bidirectional ones.
            # Every other op of the model is row-wise, so only attention needs the split.
            n = causal_rows
            y = torch.cat([self._attend(q[:n], k[:n], v[:n], True), self._attend(q[n:], k[n:], v[n:], is_causal)])
        else:
            y = self._attend(q, k, v, is_causal or causal_rows >= B)

        if self.xsa:
            y = self._remove_self_value(y, v)
        return y

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, is_causal: bool) -> torch.Tensor:
        group = self.num_heads // self.num_kv_heads
        if group == 1:
            return F.scaled_dot_product_attention(q, k, v, is_causal=is_causal)
        if _SDPA_HAS_GQA:
            return F.scaled_dot_product_attention(q, k, v, is_causal=is_causal, enable_gqa=True)
        k_rep, v_rep = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        return F.scaled_dot_product_attention(q, k_rep, v_rep, is_causal=is_causal)

    def _remove_self_value(self, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """XSA: y_i -= (y_i . v̂_i) v̂_i, with v̂_i the unit value vector of token i in the head's KV group.

        Viewing the heads as (kv_head, group) broadcasts each KV head over its query heads without
        materializing the repeat. Done in float32 so the projection stays orthogonal under bf16.
        """
        B, H, T, hd = y.shape
        y_grouped = y.float().view(B, self.num_kv_heads, H // self.num_kv_heads, T, hd)
        v_unit = F.normalize(v.float(), dim=-1).unsqueeze(2)  # (B, Hkv, 1, T, hd)
        y_grouped = y_grouped - (y_grouped * v_unit).sum(dim=-1, keepdim=True) * v_unit
        return y_grouped.view(B, H, T, hd).to(y.dtype)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, is_causal: bool,
                causal_rows: int = 0) -> torch.Tensor:
        B, T, C = x.shape
        y = self.head_outputs(x, cos, sin, is_causal, causal_rows)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class MLP(nn.Module):
    """down(leaky_relu(up(x), 0.5)^2)."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        hidden = config.mlp_mult * config.model_dim
        self.up = nn.Linear(config.model_dim, hidden, bias=False)
        self.down = nn.Linear(hidden, config.model_dim, bias=False)
        nn.init.zeros_(self.down.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.leaky_relu(self.up(x), negative_slope=0.5).square())


class Block(nn.Module):
    def __init__(self, config: GPTConfig, layer: int):
        super().__init__()
        xsa = layer >= config.num_layers - config.xsa_last_n
        self.attn = Attention(config, xsa=xsa)
        self.mlp = MLP(config)
        self.attn_scale = nn.Parameter(torch.ones(config.model_dim))
        self.mlp_scale = nn.Parameter(torch.ones(config.model_dim))
        if config.resid_mix:
            # Row 0 weighs the running stream, row 1 the embedding output x0: start as pure x.
            self.resid_mix = nn.Parameter(torch.stack([torch.ones(config.model_dim), torch.zeros(config.model_dim)]))
        else:
            self.register_parameter("resid_mix", None)
        # A constant, not a parameter: damps the input of deeper blocks (METHOD.md §3 layer scale).
        self.input_scale = 1.0 / math.sqrt(layer + 1) if config.layer_scale else 1.0

    def forward(self, x, x0, cos, sin, is_causal: bool, causal_rows: int = 0):
        if self.resid_mix is not None:
            x = self.resid_mix[0] * x + self.resid_mix[1] * x0
        x = x + self.attn_scale * self.attn(self.input_scale * rms_norm(x), cos, sin, is_causal, causal_rows)
        x = x + self.mlp_scale * self.mlp(self.input_scale * rms_norm(x))
        return x


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        d = config.model_dim
        # embed_rows = vocab_size (+1 for the mask token's input-only row, model_config.GPTConfig).
        self.tok_emb = nn.Embedding(config.embed_rows, d)
        nn.init.normal_(self.tok_emb.weight, mean=0.0, std=0.005)
        self.bigram = BigramHash(config) if config.bigram_dim > 0 else None
        self.smear = SmearGate(d) if config.smear_gate else None
        self.num_skips = config.num_layers // 2 if config.unet_skips else 0
        if self.num_skips > 0:
            self.skip_weights = nn.Parameter(torch.ones(self.num_skips, d))
        else:
            self.register_parameter("skip_weights", None)
        self.blocks = nn.ModuleList(Block(config, layer) for layer in range(config.num_layers))
        cos, sin = rope_cos_sin(ROPE_CACHE_LEN, config.head_dim, config.rope_base)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)

    def num_params(self) -> int:
        """Number of distinct parameters (the tied embedding counted once)."""
        return sum(p.numel() for p in self.parameters())

    def forward(self, idx: torch.Tensor, is_causal: bool = True, causal_rows: int = 0) -> torch.Tensor:
        """Logits (B, T, vocab_size) in float32, softcapped. is_causal=False is the denoising pass.

        causal_rows > 0 fuses the two passes of a joint step into one batched forward: rows
        [:causal_rows] are causal, the rest follow is_causal. Each row gets what the separate
        forward of its mode computes (every op but attention is row-wise), up to float rounding.
        """
        cfg = self.config
        T = idx.size(1)
        x = self.tok_emb(idx)
        if self.bigram is not None:
            x = x + self.bigram(idx)
        x = rms_norm(x)
        if self.smear is not None:
            x = self.smear(x)
        x0 = x
        if T <= self.rope_cos.size(0):
            cos, sin = self.rope_cos[:T].float(), self.rope_sin[:T].float()  # float32 even if the model was cast
        else:
            cos, sin = rope_cos_sin(T, cfg.head_dim, cfg.rope_base, device=idx.device)

        skips: list[torch.Tensor] = []
        num_encoder = self.num_skips  # blocks that push; 0 when U-Net skips are off
        for i, block in enumerate(self.blocks):
            if i >= num_encoder and skips:
                x = x + self.skip_weights[i - num_encoder] * skips.pop()
            x = block(x, x0, cos, sin, is_causal, causal_rows)
            if i < num_encoder:
                skips.append(x)

        x = rms_norm(x)
        # The tied head in float32 even under autocast: logits feed a float32 softcap + cross-entropy.
        with torch.autocast(device_type=x.device.type, enabled=False):
            # [:vocab_size]: the mask token's row (mask_token) is an input only, never a prediction.
            logits = F.linear(x.float(), self.tok_emb.weight[: cfg.vocab_size].float())
        if cfg.logit_softcap > 0:
            logits = cfg.logit_softcap * torch.tanh(logits / cfg.logit_softcap)
        return logits


# ----------------------------------------------------------------------------- parameters



def param_groups(model: GPT) -> dict[str, list[tuple[str, nn.Parameter]]]:
    """{"muon": [(name, p)], "embed": [...], "scalar": [...]} by optimizer_group, in model order."""
    groups: dict[str, list[tuple[str, nn.Parameter]]] = {"muon": [], "embed": [], "scalar": []}
    for name, p in model.named_parameters():
        groups[optimizer_group(name, p.ndim)].append((name, p))
    return groups


def state_dict_numpy(model: nn.Module) -> dict[str, np.ndarray]:
    """float32 numpy copies of every state-dict entry, keyed by the stable names in the module docstring."""
    return {name: t.detach().to(device="cpu", dtype=torch.float32).numpy().copy() for name, t in model.state_dict().items()}


def load_state_numpy(model: nn.Module, arrays: dict[str, np.ndarray]) -> None:
    """Copy arrays into the model's parameters, strictly: any missing key, unexpected key or shape
    mismatch raises ValueError naming all of them, and nothing is modified in that case."""
    state = model.state_dict()
    missing = sorted(set(state) - set(arrays))
    unexpected = sorted(set(arrays) - set(state))
    mismatched = [
        f"{name}: model {tuple(state[name].shape)} vs array {tuple(np.shape(arrays[name]))}"
        for name in sorted(set(state) & set(arrays))
        if tuple(state[name].shape) != tuple(np.shape(arrays[name]))
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
    with torch.no_grad():
        for name, target in state.items():
            # torch.tensor copies any numpy layout and keeps 0-d arrays 0-d (bigram.scale).
            target.copy_(torch.tensor(np.asarray(arrays[name]), dtype=target.dtype, device=target.device))
