"""The steps of a recipe over a plan: the table, train every cell, evaluate every cell, summarize.

A finished cell is skipped (`[skip ]` with its numbers from JSON), an interrupted one resumes from
its newest step checkpoint, an evaluation of the same protocol newer than the training is not
repeated. Every line printed comes from the cells' JSON; logs are never parsed.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from meadow_golf.recipes import cells as cellstate
from meadow_golf.recipes.plans import Cell, cell_recipe, plan_scales
from meadow_golf.recipes.presets import scale_flags, spec_scale
from meadow_golf.recipes.running import CellFailed, Progress, Runner, StoppedBySignal, fail
from meadow_golf.recipes.settings import Settings, apply_threads, check_writable, is_zero

TRAINER_MODULES = {"torch": "meadow_golf.train.train_cdm", "mlx": "meadow_golf.train.train_cdm_mlx"}
EVAL_MODULE = "meadow_golf.eval.eval_cf"


@dataclass
class Recipe:
    """A recipe's settings and the cells of its plan, with the steps that run them."""

    settings: Settings
    plan: list[Cell]
    out: TextIO = field(default_factory=lambda: sys.stdout)

    def __post_init__(self):
        s = self.settings
        self.runner = Runner(self.out, s.heartbeat_secs, s.verbose)

    def say(self, line: str) -> None:
        print(line, file=self.out, flush=True)

    def cell_dir(self, name: str) -> Path:
        return self.settings.ckpt_dir / name

    @property
    def names(self) -> str:
        return " ".join(c.name for c in self.plan)

    # ------------------------------------------------------------------------- the table

    def print_table(self, title: str) -> None:
        s = self.settings
        budget = "none" if is_zero(s.budget_secs) else f"{s.budget_secs} s"
        self.say(f"== {title}: PRESET={s.preset.name} BACKEND={s.backend} MATCH={s.match} DEVICE={s.device} "
                 f"NPROC={s.nproc} COMPILE={int(s.compile)} FUSE_PASSES={int(s.fuse_passes)} "
                 f"THREADS={s.threads or 'default'}")
        row = lambda a, b, c="": self.say(f"  {a:<6} {b:<36} {c}".rstrip() if c else f"  {a:<6} {b}")  # noqa: E731
        row("scale", "original ablation model", f"trains with (PRESET={s.preset.name})")
        for scale in plan_scales(self.plan):
            row(scale, spec_scale(scale), " ".join(scale_flags(s.preset, scale)))
        row("train", f"{s.trainer_name} {' '.join(s.preset.train_flags())}; budget per cell: {budget}; step cap: {s.steps}")
        if s.match == "tokens":
            row("match", f"controls (w=0, suffix _tok): --steps tokens_seen(matched shared cell)/"
                         f"{s.preset.batch_tokens} --train_budget_secs 0")
        elif s.match == "steps":
            row("match", f"steps: no clock (BUDGET_SECS=0); every cell trains for the step cap {s.steps}")
        else:
            row("match", "wall-clock: every cell gets the same budget / step cap")
        row("eval", f"eval_cf.py --backend {s.backend} {' '.join(s.eval_flags)} (final_model.npz of each cell)")
        row("data", f"DATA_DIR={s.data_dir} TOKENIZER={s.tokenizer or '(from meta.json)'}")
        row("dirs", f"CKPT_DIR={s.ckpt_dir}")
        row("", f"LOG_DIR={s.log_dir}")
        row("", f"OUT_DIR={s.out_dir}")
        row("cells", self.names)

    # ------------------------------------------------------------------------- training

    def own_process(self) -> bool:
        """NPROC > 1 (torchrun) and COMPILE=1 (per-process compile caches) run a cell as a child."""
        return self.settings.nproc > 1 or self.settings.compile

    def train_cell(self, cell: Cell) -> bool:
        """Train one cell (or skip it when done); True when it ran."""
        s, path = self.settings, self.cell_dir(cell.name)
        steps = cellstate.match_steps(self.cell_dir(cell.matched_to), s.preset.batch_tokens) if cell.matched_to else None
        recipe = cell_recipe(s, cell, steps)
        status = cellstate.train_status(path) if path.is_dir() else "new"
        cellstate.claim(path, {"name": cell.name, "scale": cell.scale, "backend": s.backend, "preset": s.preset.name,
                               "match": s.match, "matched_to": cell.matched_to, "recipe": recipe}, s.dir_vars["ckpt"])
        if status == "done":
            self.say(cellstate.train_line(path, "[skip ]"))
            return False
        (path / cellstate.EVAL_JSON).unlink(missing_ok=True)  # it scored the previous model of this cell
        log = s.log_dir / f"{cell.name}.train.log"
        what = "resuming from its newest step checkpoint" if status == "partial" else "new"
        matched = f", token-matched to {cell.matched_to} ({steps} steps)" if steps is not None else ""
        self.say(f"[start] {cell.name}: {what}{matched}; log {log}")
        io = [*s.preset.io_flags, "--data_dir", str(s.data_dir), "--checkpoint_dir", str(path), "--device", s.device,
              "--resume", "auto"]
        io += ["--compile"] if s.compile else []
        io += ["--fuse_passes"] if s.fuse_passes else []
        argv = [*recipe, *io, *s.tokenizer_flags]
        script = str(s.exp_dir / s.trainer_name)
        if self.own_process():
            launch = [sys.executable]
            if s.nproc > 1:
                launch += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={s.nproc}"]
            rc = self.runner.in_child(log, cell.name, [*launch, script, *argv])
        else:
            rc = self.runner.in_process(log, cell.name, ["python", script, *argv], TRAINER_MODULES[s.backend], argv)
        if rc != 0:
            raise fail(f"training {cell.name}", rc, log)
        if not (path / cellstate.RESULTS_JSON).is_file():
            raise StoppedBySignal(f"[stop ] {cell.name}: stopped by a signal after a step checkpoint; "
                                  "rerun the same command to resume")
        self.say(cellstate.train_line(path, "[done ]"))
        return True

    def check_folders(self, *which: str) -> None:
        s = self.settings
        for key in which:
            check_writable({"ckpt": s.ckpt_dir, "log": s.log_dir, "out": s.out_dir}[key], s.dir_vars[key])

    def train(self) -> None:
        s = self.settings
        self.check_folders("ckpt", "log")
        apply_threads(s)
        budget = int(float(s.budget_secs)) if s.match == "wallclock" else 0
        progress = Progress("train", len(self.plan), budget, self.out)
        for k, cell in enumerate(self.plan, 1):
            started = progress.before(k, cell.name)
            progress.after(started, self.train_cell(cell))

    # ------------------------------------------------------------------------- evaluation

    def elbo_flags(self, cell: Cell) -> list[str]:
        """The ELBO is a bound only for a model with a mask token: the absorbing cells."""
        s = self.settings
        absorbing = not cell.is_control and (cell.noise or s.noise) == "absorbing"
        return ["--elbo_samples", str(s.elbo_samples)] if s.elbo_samples and absorbing else []

    def eval_cell(self, cell: Cell) -> bool:
        s, path = self.settings, self.cell_dir(cell.name)
        if not path.is_dir():
            raise cellstate.CellError(f"{path}: not trained yet (no cell folder); run the matching run_*.sh first")
        elbo = self.elbo_flags(cell)
        status = cellstate.eval_status(path, seq_len=s.eval_seq_len, n_seqs=s.eval_n_seqs, full_val=False,
                                       decoders=[d for d in s.decoders.split(",") if d],
                                       elbo_samples=s.elbo_samples if elbo else 0)
        if status == "done":
            self.say(cellstate.eval_line(path, "[skip ]"))
            return False
        if status == "stale":
            self.say(f"[stale] {cell.name}: eval_cf.json predates results.json or used another protocol; evaluating again")
        log = s.log_dir / f"{cell.name}.eval.log"
        self.say(f"[start] eval {cell.name}; log {log}")
        json_out = path / cellstate.EVAL_JSON
        argv = ["--checkpoint", str(path / cellstate.FINAL_NPZ), "--data_dir", str(s.data_dir), *s.eval_flags, *elbo,
                "--backend", s.backend, "--device", s.device, "--json_out", str(json_out), *s.tokenizer_flags]
        rc = self.runner.in_process(log, cell.name, ["python", str(s.exp_dir / "eval_cf.py"), *argv], EVAL_MODULE, argv)
        if rc == 2 and json_out.is_file():
            json_out.replace(path / "eval_cf.failed.json")  # not "done": a rerun evaluates again
            raise fail(f"eval {cell.name}: the ar decoder disagrees with the trainer's validation "
                       f"(see {path / 'eval_cf.failed.json'})", rc, log)
        if rc != 0:
            raise fail(f"evaluating {cell.name}", rc, log)
        self.say(cellstate.eval_line(path, "[done ]"))
        return True

    def evaluate(self) -> None:
        self.check_folders("ckpt", "log")
        apply_threads(self.settings)
        progress = Progress("eval", len(self.plan), 0, self.out)
        for k, cell in enumerate(self.plan, 1):
            started = progress.before(k, cell.name)
            progress.after(started, self.eval_cell(cell))

    # ------------------------------------------------------------------------- summary

    def summarize(self, title: str) -> None:
        """scripts/summarize.py over the plan's finished cells -> OUT_DIR (and COMPARE_TO beside it)."""
        s = self.settings
        files = [str(self.cell_dir(c.name) / cellstate.RESULTS_JSON) for c in self.plan
                 if (self.cell_dir(c.name) / cellstate.RESULTS_JSON).is_file()]
        if not files:
            raise cellstate.CellError(f"no finished cells to summarize in {s.ckpt_dir}")
        self.check_folders("out")
        self.say(f"== summary (scripts/summarize.py -> {s.out_dir})")
        from meadow_golf.report import summarize  # numpy and matplotlib: imported when used
        # --floor_meta: on a synthetic corpus (its meta.json knows the exact entropy rate) every code is
        # set against that floor; a natural corpus's meta.json has none and adds nothing.
        rc = self.report(summarize.main, ["--out_dir", str(s.out_dir), "--title", title,
                                          "--floor_meta", str(s.data_dir / "meta.json"), *files])
        if rc != 0:
            raise CellFailed(f"scripts/summarize.py failed (exit status {rc})", rc)
        if s.compare_to:
            self.say(f"== this run beside the record COMPARE_TO={s.compare_to}")
            from meadow_golf.report import compare_record
            rc = self.report(compare_record.main, [str(s.out_dir / "results.json"), s.compare_to])
            if rc != 0:
                raise CellFailed(f"scripts/compare_record.py failed (exit status {rc})", rc)

    def report(self, main, argv: list[str]) -> int:
        """A report step's main() with its output on this recipe's stream."""
        with contextlib.redirect_stdout(self.out):
            try:
                return int(main(argv) or 0)
            except SystemExit as e:
                return e.code if isinstance(e.code, int) else 1
