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
  directions. The mode travels as a keyword argument through the decoder layers (they forward
  **kwargs to the token mixer), never through a context manager: under activation checkpointing
  the recomputation runs after a context manager has exited, and would silently run causal.
- our GPT: model.forward(idx, is_causal=False), exactly the from-scratch joint model's denoising
  pass (BigramHash and SmearGate read the previous position in both modes, as there).
"""

from __future__ import annotations

import types

import torch
import torch.nn as nn

from meadow_golf.retrofit.base import Base, is_deltanet

REVERSE_KWARG = "meadow_deltanet_reverse"
GATE_NAME = "reverse_gate"


def _deltanet_forward(self, hidden_states, *args, **kwargs):
    reverse = kwargs.pop(REVERSE_KWARG, False)
    out = self._causal_forward(hidden_states, *args, **kwargs)
    if not reverse:
        return out
    if kwargs.get("cache") is not None or (args and args[0] is not None):
        raise ValueError("the DeltaNet reverse branch runs on whole sequences, not with a cache")
    mask = kwargs.get("attention_mask")
    if mask is not None:
        kwargs["attention_mask"] = mask.flip(-1)
    back = self._causal_forward(hidden_states.flip(1), *args, **kwargs).flip(1)
    return out + getattr(self, GATE_NAME).to(out.dtype) * back


def install_reverse_branch(model: nn.Module) -> list[str]:
    """Give every DeltaNet layer of `model` its zero-initialised reverse gate and the two-direction
    forward; returns the gate parameters' names (relative to model). Idempotent."""
    names = []
    for name, module in model.named_modules():
        if not is_deltanet(module):
            continue
        if not hasattr(module, "_causal_forward"):
            hidden = module.out_proj.out_features
            weight = module.out_proj.weight
            module.register_parameter(GATE_NAME, nn.Parameter(torch.zeros(hidden, device=weight.device,
                                                                          dtype=torch.float32)))
            module._causal_forward = module.forward
            module.forward = types.MethodType(_deltanet_forward, module)
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
    kwargs = {} if causal else {"is_causal": False}
    if reverse and not causal:
        kwargs[REVERSE_KWARG] = True
    out = lm.model(input_ids=ids, attention_mask=attention_mask, use_cache=False, **kwargs)
    return out.last_hidden_state


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
