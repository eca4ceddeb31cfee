"""The base model of a retrofit, its mask token, and the LoRA adapter around it.

Two kinds of base:
- "hf": a transformers causal LM, from a hub id (Qwen/Qwen3.5-0.8B-Base) or a local folder in
  the hub's format (config.json + weights + tokenizer files). Loaded with AutoModelForCausalLM,
  which for Qwen3.5's multimodal hub checkpoint loads its text part.
- "gpt": one of our own checkpoints (.npz, .int6.lzma, step .pt; checkpoint.read_checkpoint), the
  shared-weight GPT of model.py. Its config gains mask_token=True: one extra embedding row.

The mask token. Real token ids are [0, n_real); the mask token is n_real and is never a target.
- hf: n_real = len(tokenizer) (every id the tokenizer can emit, added special tokens included).
  Checkpoints pad their embedding beyond that (Qwen3.5: 248,077 tokenizer ids, 248,320 rows), so
  the mask takes the first unused row and the embedding is NOT resized: the adapter loads on the
  unmodified base folder with peft alone. A base without a spare row is refused.
- gpt: n_real = vocab_size, the mask is the extra row vocab_size (model.py: the tied head reads
  only the first vocab_size rows). The new row starts at the mean of the real rows.
The mask row is trained alone through peft's trainable_token_indices (saved in the adapter file).
Scoring and losses use the first n_real logits only, so every distribution is over real tokens.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

# LoRA targets of a transformers base: attention (q/k/v/o), Gated DeltaNet's projections and the
# MLP. peft matches a name by its last component; a base without some of them (a pure-attention
# model) gets the ones it has.
HF_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "in_proj_qkv", "in_proj_z", "in_proj_b", "in_proj_a",
                   "out_proj", "gate_proj", "up_proj", "down_proj")
# Our GPT's linears inside the blocks (a regex, because the name `proj` alone would also match
# bigram.proj, which is not a block linear).
GPT_LORA_TARGETS = r".*blocks\.\d+\.(attn\.(q|k|v|proj)|mlp\.(up|down))"
GPT_SUFFIXES = (".npz", ".lzma", ".pt")
RETROFIT_JSON = "retrofit.json"
EXTRAS_FILE = "retrofit_extras.safetensors"


class RetrofitError(ValueError):
    """Bad input for a retrofit (reported as one `error:` line before any compute)."""


@dataclass
class Base:
    kind: str  # "hf" or "gpt"
    model: nn.Module  # the base model itself (no adapter)
    tokenizer: object | None  # a transformers tokenizer (hf) or None (gpt: ids come prepared)
    n_real: int  # real token ids are [0, n_real)
    mask_id: int  # = n_real
    start_id: int  # a fixed token put before a bidirectional input under the shift convention
    eos_id: int | None
    source: str
    embed_name: str  # the input embedding's module name (peft trainable_token_indices)
    describe: dict = field(default_factory=dict)

    @property
    def has_deltanet(self) -> bool:
        return any(is_deltanet(m) for m in self.model.modules())


def is_deltanet(module: nn.Module) -> bool:
    """A Gated DeltaNet (linear attention) layer: transformers' class, found by its projections."""
    return type(module).__name__.endswith("GatedDeltaNet") and hasattr(module, "in_proj_qkv")


def is_gpt_source(source: str) -> bool:
    return Path(source).suffix in GPT_SUFFIXES and Path(source).is_file()


def check_source(source: str) -> None:
    """Refuse a base that is neither an existing folder / GPT checkpoint nor a plausible hub id."""
    path = Path(source)
    if path.suffix in GPT_SUFFIXES:
        if not path.is_file():
            raise RetrofitError(f"--base_model {source}: checkpoint not found")
        return
    if path.exists():
        if not path.is_dir() or not (path / "config.json").is_file():
            raise RetrofitError(f"--base_model {source}: not a folder in the hub's format (no config.json)")
        return
    if not re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", source):
        raise RetrofitError(f"--base_model {source}: no such folder, and not a hub id (owner/name)")


def _load_gpt(source: str, device: torch.device) -> Base:
    from meadow_golf.model.gpt import GPT, GPTConfig, load_state_numpy
    from meadow_golf.model.checkpoint import read_checkpoint

    loaded = read_checkpoint(Path(source))
    config_dict = dict(loaded.config)
    if config_dict.get("mask_token"):
        raise RetrofitError(f"--base_model {source}: already has a mask token (a joint model, not a causal base)")
    config_dict["mask_token"] = True
    config = GPTConfig.from_dict(config_dict)
    weights = dict(loaded.weights)
    emb = weights["tok_emb.weight"]
    # The mask row starts at the mean real row: an "average token", inside the embedding's range.
    weights["tok_emb.weight"] = np.concatenate([emb, emb.mean(axis=0, keepdims=True)], axis=0)
    model = GPT(config)
    load_state_numpy(model, weights)
    n_real = config.vocab_size
    return Base(kind="gpt", model=model.to(device).eval(), tokenizer=None, n_real=n_real, mask_id=n_real,
                start_id=n_real, eos_id=None, source=source, embed_name="tok_emb",
                describe={"kind": "gpt", "source": source, "config": config.to_dict(),
                          "checkpoint_format": loaded.describe()})


def _load_hf(source: str, device: torch.device, dtype: torch.dtype | None) -> Base:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source)
    kwargs = {"dtype": dtype} if dtype is not None else {}
    model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    rows = model.get_input_embeddings().weight.shape[0]
    n_real = len(tokenizer)
    if n_real >= rows:
        raise RetrofitError(f"--base_model {source}: the tokenizer uses all {rows} embedding rows; no unused row "
                            "for the mask token (resizing would break loading the adapter on the base)")
    top_id = max(tokenizer.get_vocab().values())
    if top_id >= n_real:
        raise RetrofitError(f"--base_model {source}: the tokenizer has an id {top_id} >= its length {n_real}")
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    if start is None:
        raise RetrofitError(f"--base_model {source}: the tokenizer has neither a bos nor an eos token")
    embed_name = [name for name, m in model.named_modules() if m is model.get_input_embeddings()][0]
    return Base(kind="hf", model=model.to(device).eval(), tokenizer=tokenizer, n_real=n_real, mask_id=n_real,
                start_id=int(start), eos_id=tokenizer.eos_token_id, source=source,
                embed_name=embed_name.split(".")[-1],
                describe={"kind": "hf", "source": source, "model_class": type(model).__name__,
                          "embedding_rows": int(rows), "tokenizer_len": n_real,
                          "layer_types": list(getattr(model.config, "layer_types", None) or []),
                          "params": int(sum(p.numel() for p in model.parameters()))})


def load_base(source: str, device: torch.device | str = "cpu", dtype: torch.dtype | None = None) -> Base:
    """The base model (frozen, eval mode) with its tokenizer and mask token; see the module docstring."""
    check_source(source)
    device = torch.device(device)
    base = _load_gpt(source, device) if is_gpt_source(source) else _load_hf(source, device, dtype)
    for p in base.model.parameters():
        p.requires_grad_(False)
    return base


def lora_config(base: Base, r: int, alpha: float, dropout: float = 0.0):
    from peft import LoraConfig

    if base.kind == "gpt":
        targets = GPT_LORA_TARGETS
    else:
        names = {name.split(".")[-1] for name, m in base.model.named_modules() if isinstance(m, nn.Linear)}
        targets = [t for t in HF_LORA_TARGETS if t in names]
        if not targets:
            raise RetrofitError(f"--base_model {base.source}: none of the LoRA targets {HF_LORA_TARGETS} exist")
    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, bias="none",
                      trainable_token_indices={base.embed_name: [base.mask_id]})


def attach_lora(base: Base, r: int, alpha: float, dropout: float = 0.0):
    """A fresh peft model around the base: LoRA on every targeted linear, the mask row trainable.
    LoRA's B matrices start at zero, so the adapter starts as the identity."""
    from peft import get_peft_model

    return get_peft_model(base.model, lora_config(base, r, alpha, dropout))


def load_adapter(base: Base, adapter_dir: str | Path):
    """peft's own loader on the unmodified base (no resize: the mask uses a spare row)."""
    from peft import PeftModel

    return PeftModel.from_pretrained(base.model, str(adapter_dir)).eval()


def read_retrofit_json(adapter_dir: str | Path) -> dict:
    path = Path(adapter_dir) / RETROFIT_JSON
    if not path.is_file():
        raise RetrofitError(f"{adapter_dir}: no {RETROFIT_JSON} (not an adapter written by train_retrofit.py)")
    return json.loads(path.read_text())
