"""PyTorch glue shared by the trainer and the evaluators: device choice, precision, model
loading from a checkpoint's own config, the Pure-AR validation pass, and the log-prob scorer
that the backend-independent decoders (cf.py) call; TorchEval is the evaluators' --backend torch
(the contract is in backend_base.py).
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
import torch.nn.functional as F

from meadow_golf.eval.backend_base import EvalBackend
from meadow_golf.model.checkpoint import LoadedCheckpoint, read_checkpoint
from meadow_golf.data.loader import validation_result, validation_windows
from meadow_golf.model.gpt import GPT, GPTConfig, load_state_numpy, state_dict_numpy


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda requested but CUDA is not available")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ValueError("--device mps requested but MPS is not available")
    if name not in ("cuda", "mps", "cpu"):
        raise ValueError(f"unknown device {name!r} (auto, cuda, mps or cpu)")
    return torch.device(name)


def autocast_for(device: torch.device):
    """bf16 autocast on CUDA (flash attention path); float32 everywhere else.

    On CUDA the float32 parts (the tied output head, norms) may use TF32 matmuls.
    """
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def load_model(source, device: torch.device, *, xsa_last_n: int | None = None,
               original_arch: str | None = None) -> tuple[GPT, GPTConfig]:
    """Build the model from the checkpoint's config and load its weights.

    source: a checkpoint path (ours, or the original record's with one of the two flags; see
    checkpoint.read_checkpoint) or a checkpoint.LoadedCheckpoint already read."""
    loaded = source if isinstance(source, LoadedCheckpoint) else read_checkpoint(
        source, xsa_last_n=xsa_last_n, original_arch=original_arch)
    config_dict, weights = loaded.config, loaded.weights
    config = GPTConfig.from_dict(config_dict)
    model = GPT(config)
    load_state_numpy(model, weights)
    return model.to(device).eval(), config


@torch.no_grad()
def ar_nll_sum_windows(model: GPT, windows: np.ndarray, batch_size: int, device: torch.device) -> float:
    """Causal NLL in nats, summed in float64 (METHOD.md §2, not float32 per batch), over (N, T+1) windows."""
    total = 0.0
    was_training = model.training
    model.eval()
    for start in range(0, len(windows), batch_size):
        chunk = torch.as_tensor(windows[start : start + batch_size], dtype=torch.long, device=device)
        with autocast_for(device):
            logits = model(chunk[:, :-1], is_causal=True)
        nll = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), chunk[:, 1:].reshape(-1),
                              reduction="none")
        total += float(nll.double().sum().item())
    model.train(was_training)
    return total


def ar_nll_sum(model: GPT, tokens: np.ndarray, seq_len: int, batch_size: int,
               device: torch.device) -> tuple[float, int, np.ndarray]:
    """Causal NLL over consecutive non-overlapping windows of a token stream.

    Window k predicts tokens[k*T+1 : (k+1)*T+1] from tokens[k*T : (k+1)*T]; a trailing partial
    window is dropped. Returns (sum of NLL in nats as float64, number of targets, the (N, T+1)
    windows that were scored) so the caller computes bytes on exactly the same targets.
    """
    windows = validation_windows(tokens, seq_len)
    return ar_nll_sum_windows(model, windows, batch_size, device), len(windows) * seq_len, windows


def ar_val_bpb(model: GPT, tokens: np.ndarray, seq_len: int, batch_size: int, device: torch.device,
               tables) -> dict:
    """The trainer's Pure-AR val_bpb on the given validation tokens (METHOD.md §2, no clamping)."""
    nll, _, windows = ar_nll_sum(model, tokens, seq_len, batch_size, device)
    return validation_result(nll, windows, tables)


class TorchScorer:
    """scorer(inputs (B,T) int64, is_causal, targets (B,T) int64) -> log-probs (B,T) float64.

    Only the target log-probabilities leave the device. A subclass changes how logits become
    log-probabilities by overriding log_probs.
    """

    def __init__(self, model: GPT, device: torch.device):
        self.model = model.eval()
        self.device = device

    def log_probs(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, T, V) logits -> (B, T, V) log-probabilities over the full vocabulary, float32."""
        return torch.log_softmax(logits.float(), dim=-1)

    @torch.no_grad()
    def __call__(self, inputs: np.ndarray, is_causal: bool, targets: np.ndarray) -> np.ndarray:
        x = torch.as_tensor(np.asarray(inputs), dtype=torch.long, device=self.device)
        y = torch.as_tensor(np.asarray(targets), dtype=torch.long, device=self.device)
        with autocast_for(self.device):
            logits = self.model(x, is_causal=is_causal)
        logp = self.log_probs(logits).gather(-1, y.unsqueeze(-1)).squeeze(-1)
        return logp.double().cpu().numpy()

    @torch.no_grad()
    def max_logp(self, inputs: np.ndarray, is_causal: bool) -> np.ndarray:
        """(B, T) float64: each row's largest log-probability over the vocabulary (the model's
        confidence, cf.confidence_order), from the same log_probs as __call__."""
        x = torch.as_tensor(np.asarray(inputs), dtype=torch.long, device=self.device)
        with autocast_for(self.device):
            logits = self.model(x, is_causal=is_causal)
        return self.log_probs(logits).amax(dim=-1).double().cpu().numpy()


class TorchEval(EvalBackend):
    """The evaluators' PyTorch backend (contract in backend_base.py). device: a torch.device, or a
    name for resolve_device (auto | cuda | mps | cpu)."""

    name = "torch"

    def __init__(self, device="auto"):
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.device_label = str(self.device)
        self.precision = "bf16" if self.device.type == "cuda" else "float32"  # what autocast_for runs

    def build(self, config: dict, weights: dict[str, np.ndarray]) -> tuple[GPT, GPTConfig]:
        gpt_config = GPTConfig.from_dict(config)
        model = GPT(gpt_config)
        load_state_numpy(model, weights)
        return model.to(self.device).eval(), gpt_config

    def init_weights(self, config: GPTConfig) -> dict[str, np.ndarray]:
        # fork_rng: drawing a throwaway init must not move the caller's global torch RNG.
        with torch.random.fork_rng(devices=[]):
            return state_dict_numpy(GPT(config))

    def scorer(self, model: GPT) -> TorchScorer:
        return TorchScorer(model, self.device)

    @torch.no_grad()
    def logits(self, model: GPT, inputs: np.ndarray, is_causal: bool, columns=None) -> np.ndarray:
        x = torch.as_tensor(np.asarray(inputs), dtype=torch.long, device=self.device)
        with autocast_for(self.device):
            out = model(x, is_causal=is_causal).float()
        if columns is not None:
            out = out.index_select(-1, torch.as_tensor(np.asarray(columns, dtype=np.int64), device=self.device))
        return out.cpu().numpy()

    def ar_nll_sum(self, model: GPT, tokens: np.ndarray, seq_len: int, batch_size: int):
        return ar_nll_sum(model, tokens, seq_len, batch_size, self.device)

    def num_params(self, model: GPT) -> int:
        return model.num_params()
