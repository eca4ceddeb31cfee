"""Train a LoRA retrofit: a pretrained causal LM gains a bidirectional mode (METHOD.md §10).

    python experiments/2026-12-06_lora_retrofit/train_retrofit.py --base_model DIR_OR_HUB_ID \
        --out_dir OUT [--steps N] [--w 0.3] [--mode shared|adapter_off] [--deltanet causal|reverse]

Each step: the causal pass (AR cross-entropy) and the bidirectional pass on absorbing-masked
input (denoising cross-entropy, objective.py); loss = AR + w * DN. --mode shared: the causal pass
runs with the adapter on (one set of weights serves both passes, the AR term keeps the causal
mode good); --mode adapter_off: the causal pass is exactly the base (adapter disabled), so only
DN trains and the AR loss is logged, not trained. Trainable: LoRA on every targeted linear, the
mask token's embedding row, and with --deltanet reverse the per-channel reverse gates.

Writes OUT/adapter/ (peft's adapter_config.json + adapter_model.safetensors, which hold LoRA and
the mask row; retrofit.json: how it was trained; retrofit_extras.safetensors: the reverse gates
and the mask row again, for readers without peft), OUT/results.json, OUT/train.log and
OUT/train_log.jsonl, and OUT/train_state.pt every --save_every steps (all atomically); a rerun
with the same flags resumes from train_state.pt. Under torchrun each rank takes its rows of the
global batch (DDP averages the gradients), as train_cdm.py does.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn as nn

from meadow_golf.data.challenge_format import atomic_write_bytes
from meadow_golf.model.checkpoint import save_torch_checkpoint
from meadow_golf.common.cli_help import HelpFormatter
from meadow_golf.common.run_log import RunLog, git_commit, versions
from meadow_golf.retrofit import base as base_mod
from meadow_golf.retrofit import bidir, objective
from meadow_golf.retrofit.data import DataError, check_data_spec, open_rows

REPO_ROOT = Path(__file__).resolve().parents[3]
MODES = ("shared", "adapter_off")
DELTANET = ("causal", "reverse")
STATE_FILE = "train_state.pt"


@dataclass
class RetrofitConfig:
    base_model: str = ""
    out_dir: str = ""
    train_data: str = "packages:numpy"
    train_offset: int = 0
    steps: int = 100
    batch_size: int = 8  # rows per step, global (over all ranks)
    seq_len: int = 256  # targets per row (rows hold seq_len + 1 tokens)
    w: float = 0.3
    mode: str = "shared"
    deltanet: str = "causal"
    convention: str = "shift"
    lora_r: int = 16
    lora_alpha: float = 32.0
    lr: float = 2e-4
    warmup_steps: int = 10
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    seed: int = 1337
    device: str = "auto"
    bf16: bool = False
    grad_checkpoint: bool = False
    ce_chunk: int = 256
    save_every: int = 50
    log_every: int = 10


def build_parser() -> argparse.ArgumentParser:
    from meadow_golf.eval.eval_common import OneLineParser

    p = OneLineParser(description=__doc__, formatter_class=HelpFormatter)
    d = RetrofitConfig()
    p.add_argument("--base_model", required=True, help="hub id, a folder in the hub's format, or our GPT checkpoint")
    p.add_argument("--out_dir", required=True, help="folder of the adapter, logs, results and the resume state")
    p.add_argument("--train_data", default=d.train_data, help="packages:NAME,..., a prepared folder or a text folder")
    p.add_argument("--train_offset", type=int, default=d.train_offset, help="tokens of the data to skip first")
    p.add_argument("--steps", type=int, default=d.steps, help="optimizer steps")
    p.add_argument("--batch_size", type=int, default=d.batch_size, help="rows per step over all ranks")
    p.add_argument("--seq_len", type=int, default=d.seq_len, help="targets per row (a row holds seq_len + 1 tokens)")
    p.add_argument("--w", type=float, default=d.w, help="weight of the denoising loss")
    p.add_argument("--mode", choices=MODES, default=d.mode,
                   help="shared: the causal pass runs with the adapter on and AR trains; adapter_off: it is the base, only DN trains")
    p.add_argument("--deltanet", choices=DELTANET, default=d.deltanet,
                   help="reverse: in the bidirectional pass each Gated DeltaNet layer also runs right to left, added through a gated branch")
    p.add_argument("--convention", choices=objective.CONVENTIONS, default=d.convention,
                   help="shift: bidirectional row i predicts token i+1; inplace: row i predicts token i (objective.py)")
    p.add_argument("--lora_r", type=int, default=d.lora_r, help="LoRA rank")
    p.add_argument("--lora_alpha", type=float, default=d.lora_alpha, help="LoRA scale numerator (the update is scaled by alpha / r)")
    p.add_argument("--lr", type=float, default=d.lr, help="peak AdamW learning rate (warmup, then cosine to 10%% of it)")
    p.add_argument("--warmup_steps", type=int, default=d.warmup_steps, help="steps of linear learning-rate warmup")
    p.add_argument("--weight_decay", type=float, default=d.weight_decay, help="AdamW weight decay")
    p.add_argument("--grad_clip", type=float, default=d.grad_clip, help="gradient-norm clip (0 disables)")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of the LoRA initialization and the noise draws")
    p.add_argument("--device", default=d.device, choices=["auto", "cuda", "cpu"], help="auto: CUDA if available, else CPU")
    p.add_argument("--bf16", action="store_true", help="base weights in bf16 + bf16 autocast (CUDA)")
    p.add_argument("--grad_checkpoint", action="store_true", help="activation checkpointing of the base's layers")
    p.add_argument("--ce_chunk", type=int, default=d.ce_chunk, help="positions per cross-entropy chunk")
    p.add_argument("--save_every", type=int, default=d.save_every, help="steps between resume states (train_state.pt)")
    p.add_argument("--log_every", type=int, default=d.log_every, help="steps between log lines")
    return p


def validate(cfg: RetrofitConfig, world_size: int) -> None:
    """Everything checkable without loading a model; raises RetrofitError (one line)."""
    E = base_mod.RetrofitError
    for name in ("steps", "batch_size", "lora_r", "ce_chunk", "save_every", "log_every"):
        if getattr(cfg, name) < 1:
            raise E(f"--{name} must be >= 1, got {getattr(cfg, name)}")
    if cfg.seq_len < 2:
        raise E(f"--seq_len must be >= 2, got {cfg.seq_len}")
    if not (math.isfinite(cfg.w) and cfg.w >= 0):
        raise E(f"--w must be a finite number >= 0, got {cfg.w}")
    if cfg.mode == "adapter_off" and cfg.w == 0:
        raise E("--mode adapter_off with --w 0 trains nothing (the causal pass is the frozen base)")
    if not (cfg.lr > 0 and math.isfinite(cfg.lr)):
        raise E(f"--lr must be > 0, got {cfg.lr}")
    if cfg.train_offset < 0 or cfg.warmup_steps < 0 or cfg.grad_clip < 0:
        raise E("--train_offset, --warmup_steps and --grad_clip must be >= 0")
    if cfg.batch_size % world_size:
        raise E(f"--batch_size {cfg.batch_size} is not divisible by the {world_size} ranks")
    out = Path(cfg.out_dir)
    if out.exists() and not out.is_dir():
        raise E(f"--out_dir {out}: exists and is not a folder")
    base_mod.check_source(cfg.base_model)
    check_data_spec(cfg.train_data)
    if cfg.deltanet == "reverse" and not _config_has_deltanet(cfg.base_model):
        raise E(f"--deltanet reverse: {cfg.base_model} has no Gated DeltaNet (linear-attention) layers")


def _config_has_deltanet(source: str) -> bool:
    if base_mod.is_gpt_source(source):
        return False
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(source)
    config = getattr(config, "text_config", None) or config
    return "linear_attention" in (getattr(config, "layer_types", None) or [])


class JointModule(nn.Module):
    """One forward = both passes and both losses (one forward per step keeps DDP's bookkeeping
    simple). Returns (AR mean CE, DN per-token ELBO) as float32 scalars."""

    def __init__(self, peft_model: nn.Module, base: base_mod.Base, cfg: RetrofitConfig):
        super().__init__()
        self.peft_model, self.base, self.cfg = peft_model, base, cfg

    def _head(self, h):
        return bidir.head(self.peft_model, self.base, h)

    def forward(self, seq: torch.Tensor, noisy: torch.Tensor, weight: torch.Tensor):
        cfg, base = self.cfg, self.base
        x = seq[:, 1:]
        ones = torch.ones_like(x, dtype=torch.float32)
        if cfg.mode == "adapter_off":
            # The causal pass is the frozen base: no gradient reaches any trainable parameter, so
            # it is computed for the log only (and the adapter is never toggled under autograd).
            with torch.no_grad(), self.peft_model.disable_adapter():
                h = bidir.hidden_states(self.peft_model, base, seq[:, :-1], causal=True)
                ar = objective.weighted_ce_sum(self._head, h, x, ones, cfg.ce_chunk) / x.numel()
        else:
            h = bidir.hidden_states(self.peft_model, base, seq[:, :-1], causal=True)
            ar = objective.weighted_ce_sum(self._head, h, x, ones, cfg.ce_chunk) / x.numel()
        inputs, rows = objective.denoise_inputs(seq, noisy, cfg.convention)
        h = bidir.hidden_states(self.peft_model, base, inputs, causal=False, reverse=cfg.deltanet == "reverse")
        dn = objective.weighted_ce_sum(self._head, h[:, rows], x, weight, cfg.ce_chunk) / x.numel()
        return ar, dn


def trainable_named(model: nn.Module) -> dict[str, nn.Parameter]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def lr_at(cfg: RetrofitConfig, step: int) -> float:
    """Linear warmup over warmup_steps, then cosine to 10% of --lr at the last step."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = max(1, cfg.steps - cfg.warmup_steps)
    frac = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))


def save_adapter(out_dir: Path, peft_model, base: base_mod.Base, cfg: RetrofitConfig, step: int) -> Path:
    """OUT/adapter written into a temporary folder and renamed into place (never half written)."""
    from safetensors.torch import save_file

    final, tmp = out_dir / "adapter", out_dir / ".adapter.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    peft_model.save_pretrained(str(tmp))
    extras = {name: p.detach().float().cpu().contiguous() for name, p in bidir.reverse_gates(peft_model).items()}
    emb = peft_model.get_base_model().get_input_embeddings() if base.kind == "hf" else None
    ids = torch.tensor([[base.mask_id]], device=next(peft_model.parameters()).device)
    with torch.no_grad():
        if base.kind == "hf":
            row = emb(ids)[0, 0]
        else:
            row = peft_model.get_base_model().tok_emb(ids)[0, 0]
    extras["mask_row"] = row.detach().float().cpu().contiguous()
    save_file(extras, str(tmp / base_mod.EXTRAS_FILE))
    info = {"format": "meadow-golf lora retrofit", "base_model": cfg.base_model, "base_kind": base.kind,
            "mask_id": base.mask_id, "n_real": base.n_real, "start_id": base.start_id, "mode": cfg.mode,
            "deltanet": cfg.deltanet, "convention": cfg.convention, "w": cfg.w, "steps": step,
            "reverse_gates": sorted(n for n in extras if n != "mask_row")}
    (tmp / base_mod.RETROFIT_JSON).write_text(json.dumps(info, indent=2) + "\n")
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    return final


def load_retrofit(base_source: str, adapter_dir: str | Path, device="cpu", dtype=None):
    """(base, peft model in eval mode, retrofit info): the base, peft's adapter, and the reverse
    gates when the adapter was trained with --deltanet reverse."""
    from safetensors.torch import load_file

    info = base_mod.read_retrofit_json(adapter_dir)
    base = base_mod.load_base(base_source, device, dtype)
    if base.mask_id != info["mask_id"]:
        raise base_mod.RetrofitError(f"{adapter_dir}: trained with mask id {info['mask_id']}, base gives {base.mask_id}")
    if info["deltanet"] == "reverse":
        bidir.install_reverse_branch(base.model)
    model = base_mod.load_adapter(base, adapter_dir)
    if info["reverse_gates"]:
        extras = load_file(str(Path(adapter_dir) / base_mod.EXTRAS_FILE))
        gates = bidir.reverse_gates(model)
        with torch.no_grad():
            for name in info["reverse_gates"]:
                target = [p for n, p in gates.items() if n.endswith(name)]
                if len(target) != 1:
                    raise base_mod.RetrofitError(f"{adapter_dir}: reverse gate {name} has no place in the base")
                target[0].copy_(extras[name])
    return base, model.eval(), info


def _state_payload(cfg, step, model, optimizer, gen, rows) -> dict:
    return {"config": asdict(cfg), "step": step, "rows_read": rows,
            "trainable": {n: p.detach().cpu() for n, p in trainable_named(model).items()},
            "optimizer": optimizer.state_dict(), "gen": gen.get_state().cpu(), "torch_rng": torch.get_rng_state()}


def _resume(state_path: Path, cfg: RetrofitConfig, model, optimizer, gen) -> tuple[int, int]:
    state = torch.load(state_path, map_location="cpu", weights_only=True)
    saved = state["config"]
    differ = [k for k in saved if k not in ("steps", "save_every", "log_every", "device") and saved[k] != asdict(cfg)[k]]
    if differ:
        raise base_mod.RetrofitError(f"{state_path}: written with other flags ({', '.join(differ)}); "
                                     "use another --out_dir or the same flags")
    params = trainable_named(model)
    with torch.no_grad():
        for name, value in state["trainable"].items():
            params[name].copy_(value)
    optimizer.load_state_dict(state["optimizer"])
    gen.set_state(state["gen"])
    torch.set_rng_state(state["torch_rng"])
    return int(state["step"]), int(state["rows_read"])


def train(cfg: RetrofitConfig) -> dict:
    from meadow_golf.train.distributed import init_distributed
    from meadow_golf.eval.torch_backend import resolve_device

    device = resolve_device(cfg.device)
    dist_ctx = init_distributed(device)
    device = dist_ctx.device or device
    try:
        validate(cfg, dist_ctx.world_size)
        out_dir = Path(cfg.out_dir)
        torch.manual_seed(cfg.seed)
        dtype = torch.bfloat16 if cfg.bf16 else None
        base = base_mod.load_base(cfg.base_model, device, dtype)
        rows = open_rows(cfg.train_data, base.tokenizer, cfg.seq_len + 1, cfg.train_offset)
        if cfg.deltanet == "reverse":
            bidir.install_reverse_branch(base.model)
        peft_model = base_mod.attach_lora(base, cfg.lora_r, cfg.lora_alpha)
        if cfg.grad_checkpoint and base.kind == "hf":
            base.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        for name, p in bidir.reverse_gates(peft_model).items():
            p.requires_grad_(True)
        peft_model.train()
        joint = JointModule(peft_model, base, cfg)
        runner = joint
        if dist_ctx.enabled:
            from torch.nn.parallel import DistributedDataParallel

            runner = DistributedDataParallel(joint, device_ids=[device.index] if device.type == "cuda" else None)
        params = trainable_named(peft_model)
        optimizer = torch.optim.AdamW(params.values(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.95))
        gen = torch.Generator(device=device)
        gen.manual_seed(cfg.seed)
        state_path = out_dir / STATE_FILE
        start_step = 0
        if state_path.is_file():
            start_step, rows_read = _resume(state_path, cfg, peft_model, optimizer, gen)
            rows.skip_rows(rows_read)
        log = RunLog(out_dir, enabled=dist_ctx.is_main, append=start_step > 0)
        n_trainable = sum(p.numel() for p in params.values())
        log.note(f"retrofit: base {cfg.base_model} ({base.kind}) trainable_params:{n_trainable} "
                 f"mask_id:{base.mask_id} resume_step:{start_step}")
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if (cfg.bf16 and device.type == "cuda") else None
        B = cfg.batch_size // dist_ctx.world_size
        t0, last = time.perf_counter(), {}
        sums = [0.0, 0.0, 0]
        for step in range(start_step, cfg.steps):
            for group in optimizer.param_groups:
                group["lr"] = lr_at(cfg, step)
            seq_all = torch.as_tensor(rows.next_rows(cfg.batch_size), device=device)
            seq = seq_all[dist_ctx.rank * B:(dist_ctx.rank + 1) * B]
            noisy, weight = objective.corrupt(seq[:, 1:], base.mask_id, gen, dist_ctx.rank, dist_ctx.world_size)
            if autocast is not None:
                with autocast:
                    ar, dn = runner(seq, noisy, weight)
            else:
                ar, dn = runner(seq, noisy, weight)
            loss = (ar if cfg.mode == "shared" else 0.0) + cfg.w * dn
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params.values(), cfg.grad_clip)
            optimizer.step()
            ar_v, dn_v = dist_ctx.all_reduce_mean([float(ar.detach()), float(dn.detach())])
            if not (math.isfinite(ar_v) and math.isfinite(dn_v)):
                raise FloatingPointError(f"step {step + 1}: non-finite loss (ar {ar_v}, dn {dn_v})")
            sums = [sums[0] + ar_v, sums[1] + dn_v, sums[2] + 1]
            done = step + 1
            if done % cfg.log_every == 0 or done == cfg.steps:
                elapsed = time.perf_counter() - t0
                eta = elapsed / (done - start_step) * (cfg.steps - done)
                last = {"step": done, "ar_loss": sums[0] / sums[2], "dn_loss": sums[1] / sums[2]}
                log.record("train", step=done, steps=cfg.steps, ar_loss=last["ar_loss"], dn_elbo=last["dn_loss"],
                           lr=lr_at(cfg, step), elapsed_s=elapsed, eta_s=eta)
                sums = [0.0, 0.0, 0]
            if dist_ctx.is_main and (done % cfg.save_every == 0 or done == cfg.steps):
                save_torch_checkpoint(state_path, _state_payload(cfg, done, peft_model, optimizer, gen,
                                                                 rows.rows_read))
        results = {}
        if dist_ctx.is_main:
            adapter = save_adapter(out_dir, peft_model, base, cfg, cfg.steps)
            results = {
                "tool": "train_retrofit", "config": asdict(cfg), "base": base.describe,
                "steps": cfg.steps, "tokens_seen": cfg.steps * cfg.batch_size * (cfg.seq_len + 1),
                "trainable_params": n_trainable, "mask_id": base.mask_id, "n_real": base.n_real,
                "final_ar_loss": last.get("ar_loss"), "final_dn_elbo_per_token": last.get("dn_loss"),
                "loss_note": ("ar: mean causal CE (nats/token) over the last log interval; dn: the denoising "
                              "loss, the per-token MDLM bound of the masked tokens (nats), not a code length "
                              "of the data (one noise draw per row)"),
                "adapter": str(adapter), "world_size": dist_ctx.world_size, "data_epochs_completed": rows.epochs,
                "train_seconds": time.perf_counter() - t0, "resumed_from_step": start_step,
                "git_commit": git_commit(REPO_ROOT), "versions": versions(),
            }
            atomic_write_bytes(out_dir / "results.json", (json.dumps(results, indent=2) + "\n").encode())
            log.close()
        dist_ctx.close(finished=True)
        return results
    except BaseException:
        dist_ctx.close(finished=False)
        raise


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    cfg = RetrofitConfig(**{f.name: getattr(args, f.name) for f in fields(RetrofitConfig)})
    try:
        validate(cfg, 1)
        train(cfg)
    except (base_mod.RetrofitError, DataError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
