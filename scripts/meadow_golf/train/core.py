"""The backend-independent training loop shared by train_cdm.py (torch) and train_cdm_mlx.py.

The data (stream, validation tokens, vocabulary checks), the loop with its `key:value` logs and
JSON records, EMA timing, validation, step saves and the final saves (portable .npz, int6
artifact, results.json) are written here once; the flags are flags.py's, the schedule
schedule.py's, the run folder and the stop run_folder.py's, the noise model/noise.py's. A backend
subclasses TrainerBase and supplies only the model-specific pieces (see its hooks).
"""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path

import numpy as np

from meadow_golf.common.paths import check_writable_folder
from meadow_golf.common.run_log import RunLog, git_commit, versions
from meadow_golf.data import loader as data_mod
from meadow_golf.data.challenge_format import atomic_write_bytes
from meadow_golf.model.checkpoint import ARTIFACT_LIMIT_BYTES, CheckpointError, save_int6_artifact, save_npz
from meadow_golf.model.config import GPTConfig
from meadow_golf.train.flags import departures, flag_warnings, model_config
from meadow_golf.train.optim_common import muon_momentum
from meadow_golf.train.run_folder import (StopRequest, newest_step_checkpoint, old_run_files, remove_old_run,
                                          resume_command, step_checkpoints)
from meadow_golf.train.schedule import ema_due, ema_start_step, progress, schedule_lr

REPO_ROOT = Path(__file__).resolve().parents[3]
# warn_if_validation_eats_budget: validations taking this share of the budget, or a budget-stopped
# run of fewer steps than this, get a warning.
VAL_SHARE_WARN = 0.5
FEW_STEPS_WARN = 10
# Flags that say where files go or how the same arithmetic is carried out, not what is trained:
# a resume may change them freely. Every other flag defines the run and must equal the
# checkpoint's (the model flags through the model config, the tokenizer through its sha256).
RESUME_FREE_FLAGS = frozenset({"log_every", "log_every_secs", "checkpoint_dir", "save_path", "save_every", "resume", "overwrite",
                               "device", "compile", "fuse_passes", "val_batch_size", "data_dir", "tokenizer_path",
                               "help"})
# Changes a resume may make on purpose, each recorded (log and results.json "resume_changes"): the
# step cap and the wall-clock budget only say when the run stops (they also place the warmdown
# and, with --ema_start_step -1, the EMA start, which the record then explains).
RESUME_SAFE_CHANGES = ("steps", "train_budget_secs")


def seed_python_numpy(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)


class TrainerBase:
    """The training loop. Hooks a backend implements:

    set_schedule(lr_mult, momentum)   apply the schedule to the optimizers
    train_step(x, y) -> (ar, cdm)     one full step on numpy (B, T) batches; returns when the
                                      update is done (synchronized), losses as backend scalars
                                      (cdm None when cdm_weight == 0)
    scalar(value) -> float
    ema_update(decay)                 self.ema <- decay * self.ema + (1 - decay) * weights, as the
                                      original: ema * decay, then + (1 - decay) * weights
                                      (self.ema is None before the first call: copy the weights)
    load_ema()                        put self.ema into the model
    swap_in_ema() -> token            put self.ema into the model, returning what restore_weights
    restore_weights(token)            needs to put the raw weights back (validation on EMA weights)
    val_bpb() -> dict                 the Pure-AR validation on self.val_tokens (val_loss, val_bpb,
                                      val_tokens, val_bytes)
    save_step(name) / load_state(path) / weights_numpy() -> {name: float32 array}
    num_params() -> int, device_name() -> str, extra_results() -> dict
    checkpoint_suffix                 file ending of step checkpoints
    """

    backend = "none"
    checkpoint_suffix = ".pt"
    # Data parallelism (torchrun): a backend that supports it sets these before TrainerBase.__init__
    # and overrides agree / mean_over_ranks / rank_weight_spread.
    rank = 0
    world_size = 1

    def __init__(self, args):
        self.args = args
        if args.batch_tokens % (args.seq_len * self.world_size):
            raise ValueError(f"--batch_tokens {args.batch_tokens} must be a multiple of --seq_len {args.seq_len} "
                             f"x {self.world_size} processes")
        # Every input is checked here, before the model is built and before any file is written:
        # the output folders, the resume target, the data, the tokenizer and the validation size.
        self.ckpt_dir = Path(args.checkpoint_dir)
        check_writable_folder(self.ckpt_dir, "--checkpoint_dir")
        if args.save_path:
            if Path(args.save_path).is_dir():
                raise ValueError(f"{args.save_path}: --save_path is a folder, not a file")
            check_writable_folder(Path(args.save_path).parent, "--save_path's folder")
        self.resume_from = self.resume_target()
        if self.resume_from is None and not args.overwrite:
            old = old_run_files(self.ckpt_dir, with_logs=False)
            if old:
                raise ValueError(f"{self.ckpt_dir}: holds another run ({', '.join(p.name for p in old[:3])}"
                                 f"{', ...' if len(old) > 3 else ''}): continue it with --resume, start anew "
                                 "with --overwrite (deletes it), or choose another --checkpoint_dir")
        self.tokenizer_path = data_mod.resolve_tokenizer(args.data_dir, args.tokenizer_path)
        self.tables = data_mod.load_byte_tables(self.tokenizer_path)
        self.tokenizer = data_mod.tokenizer_identity(self.tokenizer_path, self.tables.vocab_size)
        vocab = args.vocab_size or self.tables.vocab_size
        self.config = model_config(args, vocab)
        data_mod.check_vocab(args.data_dir, self.tables, self.tokenizer_path, vocab)
        self.stream = data_mod.TokenStream(args.data_dir, "train")
        data_mod.check_train_shards(args.data_dir, vocab)
        self.val_tokens = data_mod.load_validation(args.data_dir, args.val_tokens, vocab)
        if len(self.val_tokens) < args.seq_len + 1:
            within = f"the first {args.val_tokens} + 1" if args.val_tokens > 0 else "all"
            raise ValueError(f"{args.data_dir}: the validation split gives {len(self.val_tokens)} tokens ({within}), "
                             f"fewer than one window of --seq_len {args.seq_len} + 1: lower --seq_len or raise "
                             "--val_tokens")
        self.resume_changes: list[dict] = []  # flags changed on purpose at a resume (RESUME_SAFE_CHANGES)
        self._new_changes: list[dict] = []
        seed_python_numpy(args.seed)
        self.step, self.elapsed, self.tokens_seen = 0, 0.0, 0
        self.ema = None
        self.ema_steps = 0
        self.ema_loaded = False  # True once the EMA weights replaced the raw ones for good (the end)
        self.lr_mult = 1.0
        self._first_bad: int | None = None
        self.val_history: list[dict] = []
        self._val_batch_estimate: float | None = None  # final_val_estimate's one-batch timing
        # What a user would not expect of this run (a flag combination, a budget eaten by
        # validation): one `warning:` line each in the log and the list "warnings" in results.json.
        self.warnings: list[str] = flag_warnings(args)

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that logs and writes files."""
        return self.rank == 0

    def agree(self, elapsed: float, stop: bool) -> tuple[float, bool]:
        """What every rank uses: rank 0's wall-clock (so all take the same steps with the same LR)
        and whether any rank was asked to stop."""
        return elapsed, stop

    def track_losses(self, ar_v, cdm_v) -> None:
        """Note whether this step's losses are finite (a backend may do this without a host sync)."""
        if self._first_bad is None:
            ar = self.scalar(ar_v)
            cdm = self.scalar(cdm_v) if cdm_v is not None else 0.0
            if not (math.isfinite(ar) and math.isfinite(cdm)):
                self._first_bad = self.step

    def first_nonfinite_step(self) -> int | None:
        return self._first_bad

    def weights_finite(self) -> bool:
        return all(np.isfinite(w).all() for w in self.weights_numpy().values())

    def check_finite(self, before_save: bool = False) -> None:
        """Stop on a non-finite loss (or, before a save, non-finite weights): the last step
        checkpoint on disk stays the last good state and nothing after it is written."""
        bad = self.first_nonfinite_step()
        if bad is None and before_save and not self.weights_finite():
            bad = self.step
        if bad is not None:
            last = newest_step_checkpoint(self.ckpt_dir, self.checkpoint_suffix)
            raise FloatingPointError(
                f"non-finite loss or weights at step {bad}: training stopped; the last good checkpoint is "
                f"{last if last else 'none (no step checkpoint was written before it)'}")

    def mean_over_ranks(self, values: list[float]) -> list[float]:
        return values

    def warm_up(self, batch: int) -> bool:
        """Compile (or otherwise prepare) the step before the clock starts, leaving the weights, the
        optimizer state, the stream and every RNG exactly as they were. Returns whether it did
        anything. The original counted compilation against the 540 s budget; here it is not."""
        return False

    def rank_weight_spread(self) -> float:
        """Largest weight difference between ranks (0.0: identical)."""
        return 0.0

    # ------------------------------------------------------------------ shared pieces
    def resume_target(self) -> Path | None:
        """The step checkpoint --resume names (None: a new run), checked to exist and to be this
        backend's kind before anything is built; its content is checked by load_state."""
        args = self.args
        if not args.resume:
            return None
        if args.resume == "auto":
            return newest_step_checkpoint(self.ckpt_dir, self.checkpoint_suffix)
        path = Path(args.resume)
        if not path.is_file():
            raise CheckpointError(f"{path}: --resume checkpoint not found" if not path.exists()
                                  else f"{path}: --resume is not a file")
        if path.suffix != self.checkpoint_suffix:
            raise CheckpointError(f"{path}: not a {self.backend} step checkpoint (step_<N>{self.checkpoint_suffix})")
        return path

    def load_resume_target(self, path: Path) -> None:
        """load_state(path); under --resume auto a refused newest checkpoint (truncated, say) is
        reported with the next older step checkpoint named, which the user may resume from
        explicitly (it is not taken silently: the refused file may be the sign of a bigger problem)."""
        try:
            self.load_state(path)
        except CheckpointError as e:
            older = [p for p in step_checkpoints(self.ckpt_dir, self.checkpoint_suffix) if p != path]
            if self.args.resume != "auto" or not older:
                raise
            raise CheckpointError(f"{e}; --resume auto took the newest step checkpoint; the next older one is "
                                  f"{older[-1]}: resume from it with --resume {older[-1]} (or move the refused "
                                  "file away and use --resume auto again)") from None

    def check_resume(self, path: Path, state: dict) -> None:
        """Refuse to continue a checkpoint's run with other settings, naming only what differs:
        model config keys, the flags that define the run (all but RESUME_FREE_FLAGS), and the
        tokenizer (by sha256, when the checkpoint records it). The RESUME_SAFE_CHANGES are allowed
        and kept in self._new_changes for the record."""
        differ = []
        saved_cfg, cfg = state.get("config") or {}, self.config.to_dict()
        # A key the checkpoint lacks is a field added after it was written (mask_token): it was
        # trained with that field's default, which every new field keeps as the old behaviour.
        defaults = GPTConfig().to_dict()
        for key in sorted(set(saved_cfg) | set(cfg)):
            if saved_cfg.get(key, defaults.get(key)) != cfg.get(key):
                differ.append(f"{key} {saved_cfg.get(key)} (checkpoint) != {cfg.get(key)} (flags)")
        model_flags = {a for a in vars(self.args) if a in cfg}
        saved_args, now = state.get("args") or {}, vars(self.args)
        changes = []
        for key in sorted(set(saved_args) & set(now)):
            if key in RESUME_FREE_FLAGS or key in model_flags or saved_args[key] == now[key]:
                continue
            if key in RESUME_SAFE_CHANGES:
                changes.append({"flag": key, "from": saved_args[key], "to": now[key], "at_step": state.get("step")})
            else:
                differ.append(f"--{key} {saved_args[key]} (checkpoint) != {now[key]} (flags)")
        saved_tok = state.get("tokenizer")
        if isinstance(saved_tok, dict) and saved_tok.get("sha256") != self.tokenizer["sha256"]:
            differ.append(f"tokenizer {data_mod.describe_tokenizer(saved_tok)} (checkpoint) != "
                          f"{data_mod.describe_tokenizer(self.tokenizer)} (flags)")
        if differ:
            raise CheckpointError(f"{path}: checkpoint does not match the flags: {'; '.join(differ)} "
                                  "(resume with the run's own settings, or start a new run)")
        steps = next((c for c in changes if c["flag"] == "steps"), None)
        if steps and 0 < self.args.steps < int(state.get("step") or 0):
            raise CheckpointError(f"{path}: --steps {self.args.steps} is below the {state.get('step')} steps "
                                  "the checkpoint has already trained")
        self._new_changes = changes

    def counters(self) -> dict:
        """The backend-independent part of a step checkpoint."""
        return {"config": self.config.to_dict(), "args": vars(self.args), "backend": self.backend,
                "tokenizer": self.tokenizer, "resume_changes": self.resume_changes,
                "stream": self.stream.state(), "step": self.step, "elapsed": self.elapsed,
                "tokens_seen": self.tokens_seen, "ema_steps": self.ema_steps, "val_history": self.val_history}

    def load_counters(self, state: dict) -> None:
        self.stream.load_state(state["stream"])
        self.step, self.elapsed = state["step"], state["elapsed"]
        self.tokens_seen, self.ema_steps = state["tokens_seen"], state["ema_steps"]
        self.val_history = state["val_history"]
        self.resume_changes = list(state.get("resume_changes") or []) + self._new_changes

    def update_ema(self) -> None:
        """After the update of 0-based step k = self.step - 1: the shadow is created as a copy at
        k == ema_start_step and averaged in at every later step (the original's timing)."""
        if not ema_due(self.args, self.step - 1):
            return
        self.ema_update(self.args.ema_decay)
        self.ema_steps += 1

    def validate(self, log: RunLog) -> dict:
        """Pure-AR validation; while an EMA exists it runs on the EMA weights (as the original's)."""
        t0 = time.perf_counter()
        on_ema = self.ema is not None
        token = self.swap_in_ema() if on_ema and not self.ema_loaded else None
        try:
            res = {"step": self.step, **self.val_bpb(), "ema": on_ema, "val_seconds": time.perf_counter() - t0}
        finally:
            if token is not None:
                self.restore_weights(token)
        self.val_history.append(res)
        log.record("val", step=self.step, val_loss=res["val_loss"], val_bpb=res["val_bpb"],
                   val_tokens=res["val_tokens"], val_bytes=res["val_bytes"], ema=on_ema, train_time=self.elapsed)
        return res

    def log_header(self, log: RunLog) -> None:
        args = self.args
        log.note("config:" + json.dumps({"model": self.config.to_dict(), "args": vars(args),
                                          "backend": self.backend, "device": self.device_name(),
                                          "params": self.num_params(), "tokenizer": str(self.tokenizer_path),
                                          **self.extra_results()}, sort_keys=True))
        ema_text = (f"ema:on decay:{args.ema_decay} start_step:{ema_start_step(args)}"
                    if args.ema_decay > 0 else "ema:off")
        passes = 1 + (args.cdm_weight > 0) + (args.retro_alpha > 0)
        log.note(f"{ema_text} cdm_weight:{args.cdm_weight} retro_alpha:{args.retro_alpha} passes_per_step:{passes}")
        gone = departures(args)
        log.note(f"lr_schedule:original clock:{args.clock} muon_clip:{args.muon_clip} "
                 f"departures_from_original:{','.join(gone) if gone else 'none'}")

    def final_val_estimate(self) -> float:
        """Seconds the final validation should take. It runs after the budget/step cap ends, so the
        time fraction alone leaves it out of the ETA (minutes on a big --val_tokens). Every
        validation scores the same windows, so the mean of those already timed (val_history,
        kept across a resume) predicts it. With none timed yet (--val_every 0), one batch of
        windows per rank is timed once and scaled to the whole set (val_bpb reads self.val_tokens;
        a first call's overhead makes it err high). That one batch is on the run's clock, as
        validations are under --clock original."""
        timed = [v["val_seconds"] for v in self.val_history if "val_seconds" in v]
        if timed:
            return sum(timed) / len(timed)
        if self._val_batch_estimate is None:
            seq_len = self.args.seq_len
            n_windows = (len(self.val_tokens) - 1) // seq_len
            part = min(n_windows, self.args.val_batch_size * self.world_size)
            full = self.val_tokens
            self.val_tokens = full[: part * seq_len + 1]
            t0 = time.perf_counter()
            try:
                self.val_bpb()
            finally:
                self.val_tokens = full
            self._val_batch_estimate = (time.perf_counter() - t0) * n_windows / part
        return self._val_batch_estimate

    def log_step(self, log: RunLog, ar_v, cdm_v, since: tuple[float, int]) -> tuple[float, int]:
        """One `train` record; fails loudly on a non-finite loss. Returns the new (time, tokens) mark."""
        args = self.args
        # Each rank's losses are its part of the global-batch loss; the global one is their mean.
        self.check_finite()
        ar, cdm = self.mean_over_ranks([self.scalar(ar_v), self.scalar(cdm_v) if cdm_v is not None else 0.0])
        cdm = cdm if cdm_v is not None else None
        now = time.perf_counter()
        tok_s = (self.tokens_seen - since[1]) / max(now - since[0], 1e-9)
        frac = progress(self.step, self.elapsed, args)
        # The rest of the training at the pace so far, plus the final validation (not in frac).
        eta_val = self.final_val_estimate()
        eta = self.elapsed * (1 - frac) / max(frac, 1e-9) + eta_val
        total = str(args.steps) if args.steps > 0 else "budget"
        fields = dict(step=f"{self.step}/{total}", train_loss=ar + args.cdm_weight * (cdm or 0.0), ar_loss=ar)
        if cdm is not None:
            fields["cdm_loss"] = cdm
        log.record("train", **fields, lr_mult=self.lr_mult,
                   train_time=self.elapsed, tokens=self.tokens_seen, tok_s=tok_s, eta_s=eta, eta_val_s=eta_val)
        return now, self.tokens_seen

    # ------------------------------------------------------------------ loop
    def run(self) -> dict | None:
        """Train to the end (-> results) or until SIGTERM/SIGINT (-> None, after a step checkpoint)."""
        stop = StopRequest()
        try:
            return self._run(stop)
        finally:
            stop.restore()

    def save_checked(self, name: str) -> None:
        self.check_finite(before_save=True)
        if self.is_main:
            self.save_step(name)

    def _run(self, stop: StopRequest) -> dict | None:
        """The original's loop order (METHOD.md §4), step k = self.step (updates done so far):
        top of the step: read the clock; stop for good if k == --steps or the budget is spent; else
        validate when k % val_every == 0 (k = 0 included); then the LR, the step, the EMA, the log
        and the step checkpoint. --clock original counts everything from the loop's start (lazy
        compilation in the first step too); --clock train_only counts the steps alone."""
        args = self.args
        resume_from = self.resume_from
        # The checkpoint is read (and refused) before the folder or any log file is created.
        if resume_from is not None:
            self.load_resume_target(resume_from)
        removed = remove_old_run(self.ckpt_dir) if resume_from is None and args.overwrite and self.is_main else []
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        log = RunLog(self.ckpt_dir, enabled=self.is_main, append=resume_from is not None)
        if removed:
            log.note(f"overwrite: removed the previous run's {', '.join(removed)}")
        if resume_from is not None:
            log.note(f"resumed_from:{resume_from.resolve()} step:{self.step} elapsed:{self.elapsed:.1f}")
            for c in self._new_changes:
                log.note(f"resume_changed:--{c['flag']} from:{c['from']} to:{c['to']} at_step:{c['at_step']}"
                         + (f" ema_start_step:{ema_start_step(args)}"
                            if c["flag"] == "steps" and args.ema_start_step < 0 and args.ema_decay > 0 else ""))
        self.log_header(log)
        for text in self.warnings:
            log.note(f"warning: {text}")
        batch = args.batch_tokens // args.seq_len // self.world_size  # this rank's rows
        original_clock = args.clock == "original"
        if not original_clock:
            t0 = time.perf_counter()
            if self.warm_up(batch):
                log.record("warmup", compile_seconds=time.perf_counter() - t0, counted_in_budget=False)
        # Step k's checkpoint is written after its update and before step k's validation (which
        # belongs to the top of the next step), so a resumed run does that validation itself.
        saved_at = self.step if resume_from is not None else -1  # a stop right away need not re-save
        clock_base, clock_start = self.elapsed, time.perf_counter()
        mark = (time.perf_counter(), self.tokens_seen)
        # --log_every_secs is read on the run's clock as every rank agreed it (rank 0's), so all
        # ranks decide alike and reach log_step's collective together; a wall clock per rank
        # could differ by a step and hang DDP. Decided at the top, logged after that step.
        logged_at = self.elapsed
        while True:
            if original_clock:
                self.elapsed = clock_base + time.perf_counter() - clock_start
            self.elapsed, stop_now = self.agree(self.elapsed, stop.requested)
            log_by_time = args.log_every_secs > 0 and self.elapsed - logged_at >= args.log_every_secs
            if (args.steps > 0 and self.step >= args.steps) or \
                    (args.train_budget_secs > 0 and self.elapsed >= args.train_budget_secs):
                break
            if stop_now:
                if saved_at != self.step:
                    self.save_checked(f"step_{self.step}")
                log.note(f"stopped:{stop.signal_name or 'signal'} step:{self.step} "
                         f"checkpoint:{(self.ckpt_dir / f'step_{self.step}{self.checkpoint_suffix}').resolve()} "
                         f"resume_with: {resume_command()}")
                log.close()
                return None
            if args.val_every > 0 and self.step % args.val_every == 0:
                self.validate(log)
                self.warn_if_validation_eats_budget(log, at_end=False)
            t0 = time.perf_counter()
            # The time rule reads the clock again after the validation, as the original does.
            now = clock_base + t0 - clock_start if original_clock else self.elapsed
            self.lr_mult = schedule_lr(args, self.step, now)
            self.set_schedule(self.lr_mult, muon_momentum(self.step, warmup_steps=args.momentum_warmup_steps))
            x, y = self.stream.next_batch(batch, args.seq_len, self.rank, self.world_size)
            ar_v, cdm_v = self.train_step(x, y)
            self.step += 1
            self.tokens_seen += args.batch_tokens
            self.track_losses(ar_v, cdm_v)
            if not original_clock:
                self.elapsed += time.perf_counter() - t0
            self.update_ema()
            if self.step % args.log_every == 0 or self.step == 1 or self.step == args.steps or log_by_time:
                mark = self.log_step(log, ar_v, cdm_v, mark)
                logged_at = self.elapsed
            if args.save_every > 0 and self.step % args.save_every == 0 and self.step != args.steps:
                self.save_checked(f"step_{self.step}")
                saved_at = self.step
        return self.finish(log)

    def warn_if_validation_eats_budget(self, log: RunLog, at_end: bool) -> None:
        """Under --clock original the validations run on the budget's clock: say so (once) when they
        took at least VAL_SHARE_WARN of --train_budget_secs, and, at the end, when a budget-stopped
        run trained fewer than FEW_STEPS_WARN steps."""
        args = self.args
        budget = args.train_budget_secs
        if budget <= 0 or args.clock != "original":
            return
        # The validations of the loop so far (val_history is kept across a resume; the final one
        # runs after the budget and is not in it yet).
        val_seconds = sum(v.get("val_seconds", 0.0) for v in self.val_history)
        warned = any(w.startswith("validation took") for w in self.warnings)
        if val_seconds >= VAL_SHARE_WARN * budget and not warned:
            self.add_warning(log, f"validation took {val_seconds:.1f} s of the {budget:g} s budget "
                                  f"(--clock original counts it; --val_tokens {args.val_tokens} scores "
                                  f"{len(self.val_tokens) - 1} tokens): lower --val_tokens (the CPU recipes pass "
                                  "65536) or raise --train_budget_secs")
        stopped_by_budget = not (args.steps > 0 and self.step >= args.steps)
        if at_end and stopped_by_budget and self.step < FEW_STEPS_WARN:
            self.add_warning(log, f"the budget of {budget:g} s ended the run after only {self.step} steps "
                                  f"(validation {val_seconds:.1f} s of it): the model is barely trained")

    def add_warning(self, log: RunLog, text: str) -> None:
        self.warnings.append(text)
        log.note(f"warning: {text}")

    def finish(self, log: RunLog) -> dict:
        args = self.args
        self.warn_if_validation_eats_budget(log, at_end=True)
        ema_used = self.ema is not None
        if ema_used:
            self.load_ema()  # for good: the final validation and every final save are the EMA weights
            self.ema_loaded = True
        log.note(f"ema_used:{str(ema_used).lower()} ema_steps:{self.ema_steps}")
        self.check_finite(before_save=True)
        final = self.validate(log)
        spread = self.rank_weight_spread()
        if not self.is_main:
            return {}
        self.save_step("step_final")
        weights = self.weights_numpy()
        save_path = Path(args.save_path) if args.save_path else self.ckpt_dir / "final_model.npz"
        save_npz(save_path, weights, self.config.to_dict(), tokenizer=self.tokenizer)
        artifact = self.ckpt_dir / "final_model.int6.lzma"
        artifact_bytes = save_int6_artifact(artifact, weights, self.config.to_dict(), tokenizer=self.tokenizer)
        log.record("artifact", artifact_bytes=artifact_bytes, limit_bytes=ARTIFACT_LIMIT_BYTES,
                   fits=artifact_bytes <= ARTIFACT_LIMIT_BYTES)
        results = {
            # The LAST validation (the original reported the best one seen; both are here).
            "final_val_bpb": final["val_bpb"], "final_val_loss": final["val_loss"],
            "best_val_bpb": min(v["val_bpb"] for v in self.val_history),
            "val_tokens": final["val_tokens"], "val_bytes": final["val_bytes"],
            "steps": self.step, "tokens_seen": self.tokens_seen, "train_seconds": self.elapsed,
            "config": {"model": self.config.to_dict(), "train": vars(args)},
            "params": self.num_params(), "cdm_weight": args.cdm_weight,
            "ema": {"enabled": args.ema_decay > 0, "used": ema_used, "steps": self.ema_steps,
                    "decay": args.ema_decay, "start_step": ema_start_step(args) if args.ema_decay > 0 else None},
            "rules": {"lr_schedule": "original", "clock": args.clock, "muon_clip": args.muon_clip,
                      "departures_from_original": departures(args)},
            "tokenizer": self.tokenizer, "resume_changes": self.resume_changes,
            "val_history": self.val_history, "backend": self.backend, "device": self.device_name(),
            "world_size": self.world_size, "rank_weight_spread": spread,
            "npz": str(save_path), "artifact": str(artifact), "artifact_bytes": artifact_bytes,
            "git_commit": git_commit(REPO_ROOT), "versions": versions(), "warnings": self.warnings,
            **self.extra_results(),
        }
        atomic_write_bytes(self.ckpt_dir / "results.json", (json.dumps(results, indent=2) + "\n").encode())
        log.record("final", step=self.step, final_val_bpb=final["val_bpb"], train_time=self.elapsed,
                   tokens=self.tokens_seen, results=str(self.ckpt_dir / "results.json"))
        log.close()
        return results
