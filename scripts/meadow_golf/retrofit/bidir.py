"""The two forward modes of a retrofitted model, and the Gated DeltaNet reverse branch.

Causal mode: the base's own forward (adapter on or off).
Bidirectional mode: the adapter on, attention without the causal mask.
- transformers bases: `is_causal=False` is passed down the forward; the full-attention layers
  honour it (eager and sdpa), padding stays masked. Gated DeltaNet layers are recurrences with a
  causal convolution and stay causal whatever the mask. With `--deltanet reverse` each DeltaNet
  layer ALSO runs on the time-reversed sequence, and
      out = f(x) + g * flip(f(flip(x)))
  with g a per-channel gate (hidden size) that starts at 0 (the BiMamba / Caduceus pattern): the
  retrofit starts from the base's function exactly, and the gate learns how much of the
  right-to-left summary to add. f is the layer's own weights (and its LoRA), shared by both
  directions. The mode travels as an argument of each layer call, never through a context
  manager (under activation checkpointing the recomputation runs after a context manager has
  exited, and would silently run causal). The carrier is the attention mask: a bidirectional
  forward hands the model a per-layer-type mask dict (transformers uses a dict as given), whose
  linear-attention entry is a ReverseMask wrapping the padding mask; the decoder layer passes it
  to its DeltaNet as `attention_mask`, where the two-direction forward unwraps it. (Unknown
  keyword arguments are dropped by the model's forward before they reach the layers.)
- our GPT: model.forward(idx, is_causal=False), exactly the from-scratch joint model's denoising
  pass (BigramHash and SmearGate read the previous position in both modes, as there).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from meadow_golf.retrofit.base import Base, is_deltanet

GATE_NAME = "reverse_gate"


class ReverseMask:
    """The linear-attention mask of a bidirectional forward with the reverse branch: the padding
    mask (B, T) or None, marked so the DeltaNet layer also runs right to left."""

    def __init__(self, mask):
        self.mask = mask


def _deltanet_forward(self, hidden_states, cache=None, attention_mask=None, **kwargs):
    causal_forward = type(self)._meadow_causal_forward
    if not isinstance(attention_mask, ReverseMask):
        return causal_forward(self, hidden_states, cache=cache, attention_mask=attention_mask, **kwargs)
    mask = attention_mask.mask
    out = causal_forward(self, hidden_states, cache=cache, attention_mask=mask, **kwargs)
    if cache is not None:
        raise ValueError("the DeltaNet reverse branch runs on whole sequences, not with a cache")
    back_mask = None if mask is None else mask.flip(-1)
    back = causal_forward(self, hidden_states.flip(1), cache=None, attention_mask=back_mask, **kwargs).flip(1)
    return out + getattr(self, GATE_NAME).to(out.dtype) * back


def install_reverse_branch(model: nn.Module) -> list[str]:
    """Give every DeltaNet layer of `model` its zero-initialised reverse gate, and the DeltaNet
    class the two-direction forward; returns the gate parameters' names (relative to model).
    The forward is patched on the class, not the instance: under transformers' activation
    checkpointing an instance-level forward was bypassed (the class's own forward ran). The
    patched forward is the class's own unless it receives a ReverseMask, which only the
    bidirectional mode with the reverse branch passes. Idempotent."""
    names = []
    for name, module in model.named_modules():
        if not is_deltanet(module):
            continue
        cls = type(module)
        if "_meadow_causal_forward" not in cls.__dict__:
            cls._meadow_causal_forward = cls.forward
            cls.forward = _deltanet_forward
        if GATE_NAME not in module._parameters:
            weight = module.out_proj.weight
            module.register_parameter(GATE_NAME, nn.Parameter(torch.zeros(module.out_proj.out_features,
                                                                          device=weight.device, dtype=torch.float32)))
        names.append(f"{name}.{GATE_NAME}" if name else GATE_NAME)
    return names


def reverse_gates(model: nn.Module) -> dict[str, nn.Parameter]:
    return {name: p for name, p in model.named_parameters() if name.endswith(GATE_NAME)}


def _hf_causal_lm(model: nn.Module) -> nn.Module:
    """The transformers CausalLM inside a peft model (LoRA layers are injected in place), or itself."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def hidden_states(model: nn.Module, base: Base, ids: torch.Tensor, *, causal: bool, reverse: bool = False,
                  attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """(B, T, D) final hidden states of `model` (the peft model, or the bare base) in one mode.
    For our GPT the "hidden states" are the logits already (its vocabulary is small); head() is
    then the identity on them."""
    if base.kind == "gpt":
        return model(ids, is_causal=causal)
    lm = _hf_causal_lm(model)
    if causal:
        return lm.model(input_ids=ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
    B, T = ids.shape
    padded = attention_mask is not None and not bool(attention_mask.all())
    full = attention_mask[:, None, None, :].bool().expand(B, 1, T, T) if padded else None
    linear = attention_mask if padded else None
    masks = {"full_attention": full, "linear_attention": ReverseMask(linear) if reverse else linear}
    return lm.model(input_ids=ids, attention_mask=masks, use_cache=False, is_causal=False).last_hidden_state


def head(model: nn.Module, base: Base, h: torch.Tensor) -> torch.Tensor:
    """float32 logits over the real tokens [0, n_real) from hidden states (any leading shape)."""
    if base.kind == "gpt":
        return h[..., : base.n_real].float()
    lm = _hf_causal_lm(model)
    return lm.lm_head(h)[..., : base.n_real].float()


def logits(model: nn.Module, base: Base, ids: torch.Tensor, *, causal: bool, reverse: bool = False,
           attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    return head(model, base, hidden_states(model, base, ids, causal=causal, reverse=reverse,
                                           attention_mask=attention_mask))
