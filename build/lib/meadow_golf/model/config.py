"""The torch-free half of the model definition: the configuration, the constants both backends
share, and the optimizer grouping by parameter name.

It lives apart from model.py (the PyTorch GPT) so that the MLX twin (model_mlx.py), the trainer's
shared core and the evaluators under `--backend mlx` can build a config without importing torch:
a Mac install without torch must work (pip install -e '.[mlx]'). model.py re-exports every name
here, so `from model import GPTConfig` keeps working where torch is installed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

RMS_EPS = 1e-6
# Multipliers of the BigramHash (METHOD.md §3).
BIGRAM_MUL_CUR = 36313
BIGRAM_MUL_PREV = 27191


# ----------------------------------------------------------------------------- config


@dataclass
class GPTConfig:
    vocab_size: int = 1024
    num_layers: int = 5
    model_dim: int = 256
    num_heads: int = 8
    num_kv_heads: int = 4
    mlp_mult: int = 3
    bigram_dim: int = 128  # 0 disables BigramHash
    bigram_buckets: int = 2048
    xsa_last_n: int = 2  # 0 disables XSA
    smear_gate: bool = True
    unet_skips: bool = True
    layer_scale: bool = True  # s = 1/sqrt(layer+1) on the normed block inputs
    resid_mix: bool = True  # x = m0*x + m1*x0 per block
    qk_norm: bool = True
    rope_base: float = 10000.0
    qk_gain_init: float = 1.5
    logit_softcap: float = 30.0  # 0 disables
    # Absorbing-mask noise (train_cdm.py --noise absorbing): tok_emb gets ONE extra row, id
    # vocab_size = the mask token, read only as an input. The tied head uses the first
    # vocab_size rows, so no probability is ever put on the mask and the output vocabulary is
    # unchanged. False (the default, every existing checkpoint) is the original's model.
    mask_token: bool = False

    def __post_init__(self) -> None:
        problems = []
        if self.vocab_size < 1 or self.num_layers < 1 or self.model_dim < 1 or self.mlp_mult < 1:
            problems.append("vocab_size, num_layers, model_dim and mlp_mult must be >= 1")
        if self.num_heads < 1 or self.model_dim % self.num_heads:
            problems.append(f"model_dim={self.model_dim} not divisible by num_heads={self.num_heads}")
        elif (self.model_dim // self.num_heads) % 2:
            problems.append(f"head_dim={self.model_dim // self.num_heads} must be even for RoPE")
        if self.num_kv_heads < 1 or self.num_heads % self.num_kv_heads:
            problems.append(f"num_heads={self.num_heads} not divisible by num_kv_heads={self.num_kv_heads}")
        if not 0 <= self.xsa_last_n <= self.num_layers:
            problems.append(f"xsa_last_n={self.xsa_last_n} outside [0, num_layers={self.num_layers}]")
        if self.bigram_dim < 0:
            problems.append("bigram_dim must be >= 0 (0 disables BigramHash)")
        if self.bigram_dim > 0 and self.bigram_buckets < 2:
            problems.append("bigram_buckets must be >= 2 (the hash is taken mod bigram_buckets - 1)")
        if self.logit_softcap < 0:
            problems.append("logit_softcap must be >= 0 (0 disables)")
        if problems:
            raise ValueError("invalid GPTConfig: " + "; ".join(problems))

    @property
    def head_dim(self) -> int:
        return self.model_dim // self.num_heads

    @property
    def embed_rows(self) -> int:
        """Rows of tok_emb.weight: the vocabulary, plus the mask token's row with mask_token."""
        return self.vocab_size + int(self.mask_token)

    @property
    def mask_id(self) -> int | None:
        """The mask token's input id (vocab_size), or None for a model without one."""
        return self.vocab_size if self.mask_token else None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> GPTConfig:
        """Build a config from a dict; missing keys take their defaults, unknown keys are an error
        (a typo or a config from another model must not be silently dropped)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown GPTConfig keys: {unknown}")
        return cls(**d)


def param_shapes(config: GPTConfig) -> dict[str, tuple[int, ...]]:
    """Every parameter of the model a config builds, by name, with its shape: the one shape table
    (gpt.py's docstring lists the same names) that both model definitions build and that the
    checkpoint checks read (checkpoint.check_original_tensors). Torch-free, so the MLX side reads
    it too; tests check it against the torch and the MLX model for configs with every component
    on and off. A component switched off has no parameters."""
    V, d, L, H = config.embed_rows, config.model_dim, config.num_layers, config.num_heads
    kv_dim, hidden = config.num_kv_heads * config.head_dim, config.mlp_mult * d
    shapes: dict[str, tuple[int, ...]] = {"tok_emb.weight": (V, d)}
    if config.bigram_dim > 0:
        shapes.update({"bigram.embed.weight": (config.bigram_buckets, config.bigram_dim),
                       "bigram.proj.weight": (d, config.bigram_dim), "bigram.scale": ()})
    if config.smear_gate:
        shapes["smear.gate"] = (d,)
    if config.unet_skips and L // 2 > 0:
        shapes["skip_weights"] = (L // 2, d)
    for i in range(L):
        shapes.update({f"blocks.{i}.attn_scale": (d,), f"blocks.{i}.mlp_scale": (d,)})
        if config.resid_mix:
            shapes[f"blocks.{i}.resid_mix"] = (2, d)
        shapes.update({
            f"blocks.{i}.attn.q.weight": (d, d),
            f"blocks.{i}.attn.k.weight": (kv_dim, d),
            f"blocks.{i}.attn.v.weight": (kv_dim, d),
            f"blocks.{i}.attn.proj.weight": (d, d),
            f"blocks.{i}.attn.q_gain": (H,),
            f"blocks.{i}.mlp.up.weight": (hidden, d),
            f"blocks.{i}.mlp.down.weight": (d, hidden),
        })
    return shapes


# The configurations of the original ablation (METHOD.md §3) and a plain baseline for comparison.
# These are shared instances: derive variants with dataclasses.replace(PRESETS[name], ...).
PRESETS: dict[str, GPTConfig] = {
    "5L": GPTConfig(vocab_size=4096, num_layers=5, model_dim=256, bigram_dim=128, xsa_last_n=2),
    "11L": GPTConfig(vocab_size=4096, num_layers=11, model_dim=512, bigram_dim=128, xsa_last_n=4),
    # Close to the challenge's naive baseline (9L d=512 sp1024, MLP 2x): every extra of the
    # ablation switched off. It keeps resid_mix, QK-norm and the q gain, as the baseline had them.
    "baseline": GPTConfig(
        vocab_size=1024,
        num_layers=9,
        model_dim=512,
        mlp_mult=2,
        bigram_dim=0,
        xsa_last_n=0,
        smear_gate=False,
        unet_skips=False,
        layer_scale=False,
    ),
}


# ----------------------------------------------------------------------------- parameters


# Name fragments that keep a parameter out of Muon even when it is 2-D (resid_mix, skip_weights),
# the original's list; the token embedding is the one other exception (METHOD.md §4).
MUON_EXCLUDED_NAME_PARTS = ("attn_scale", "mlp_scale", "resid_mix", "q_gain", "skip_weight", "gate", "scale",
                            "ln_scale")
EMBED_PARAM = "tok_emb.weight"


def optimizer_group(name: str, ndim: int) -> str:
    """The original's split by name and rank: "embed" for the token embedding, "muon" for every
    other 2-D parameter whose name holds none of MUON_EXCLUDED_NAME_PARTS (block matrices AND
    bigram.embed.weight / bigram.proj.weight), "scalar" for everything else."""
    if name == EMBED_PARAM:
        return "embed"
    if ndim == 2 and not any(part in name for part in MUON_EXCLUDED_NAME_PARTS):
        return "muon"
    return "scalar"
