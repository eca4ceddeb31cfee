"""The commands a writeup shows, read out of its Markdown and checked without running them.

Used by tests/test_writeup_commands.py (not collected itself: its name does not start with test_).

What counts as a command: a line of a fenced block (```bash, ```sh or a bare ```), of an indented
block, or an inline code span, whose program (after any `NAME=value` assignments) is one of
PROGRAMS. Lines joined by a trailing backslash are one command; `#` starts a comment.

The convention the writeups follow (stated in the top README, "Commands in the writeups"):
- every command runs from the repository root, unless a `cd` earlier in the same block moves it;
- `<!-- runnable: cpu -->` on the line before a fenced block: the whole block runs on a CPU in a
  minute or less (the test runs it for real in a fresh copy);
- every other command is checked, not run: its script exists, each `--flag` is in the script's
  parser (`--help`'s usage), each environment variable a recipe is given is one the recipes read,
  each `pip install '.[extra]'` names an extra of pyproject.toml, and each path argument exists in
  a fresh copy, resolved from the folder the command runs in. Paths that commands make are allowed
  where commands make them: anything under runs/, a data/ folder that some writeup's
  `prepare_data.py ... --out data/<name>` prepares, and the target of an output flag or `>` whose
  folder exists.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

RUNNABLE_MARK = "<!-- runnable: cpu -->"
PROGRAMS = {"python", "python3", "bash", "torchrun", "cd", "export", "pip"}
FENCE_LANGS = {"", "bash", "sh", "shell"}
# Flags whose value a command writes, so it need not exist beforehand.
OUTPUT_FLAGS = {"--out", "--out_dir", "--json_out", "--checkpoint_dir", "--save_path", "--cache-dir"}
PATH_SUFFIXES = (".py", ".sh", ".json", ".jsonl", ".npz", ".lzma", ".pt", ".model", ".bin", ".md", ".log", ".png")
# Environment variables read by Python or a library, not by the recipes' own code.
EXTERNAL_ENV = {"OMP_NUM_THREADS", "MKL_NUM_THREADS", "PYTHONPATH", "HF_HUB_OFFLINE", "CUDA_VISIBLE_DEVICES", "HF_HOME"}
ASSIGNMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", re.S)
SEPARATORS = {"&&", "||", ";", "|", "&"}


@dataclass
class Block:
    """One place in a writeup that holds commands: its file, first line, kind and logical lines."""

    writeup: Path
    line: int
    kind: str  # "fenced", "indented" or "inline"
    lines: list[str]
    runnable: bool = False
    text: str = ""  # a fenced block's text as written (what runs, here-documents and all)

    def where(self, root: Path) -> str:
        return f"{self.writeup.relative_to(root)}:{self.line} ({self.kind})"


def writeups(root: Path) -> list[Path]:
    """The top README and every README.md under experiments/ (drafts/ is history, not instructions)."""
    return [root / "README.md", *sorted((root / "experiments").rglob("README.md"))]


def logical_lines(raw: list[str]) -> list[str]:
    out, current = [], ""
    for line in raw:
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        out.append(current + line)
        current = ""
    if current:
        out.append(current)
    return [line.strip() for line in out if line.strip()]


def program_of(line: str) -> str | None:
    """The program a command line runs (first word after NAME=value assignments), or None."""
    for word in line.split():
        if ASSIGNMENT.match(word) and not word.startswith("-"):
            continue
        return word if word in PROGRAMS else None
    return "=" if line.split() and ASSIGNMENT.match(line.split()[0]) else None


def is_command(line: str) -> bool:
    return program_of(line) is not None


def extract_blocks(path: Path) -> list[Block]:
    """Every fenced, indented and inline place in one Markdown file that holds a command."""
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    blocks: list[Block] = []
    prose: list[tuple[int, str]] = []  # (line number, text) outside code blocks, for inline spans
    i = 0
    while i < len(lines):
        line = lines[i]
        fence = re.match(r"^ {0,3}(```+|~~~+)\s*([\w-]*)", line)
        if fence:
            marker, lang = fence.group(1), fence.group(2).lower()
            end = i + 1
            while end < len(lines) and not lines[end].strip().startswith(marker[:3]):
                end += 1
            before = next((lines[k].strip() for k in range(i - 1, -1, -1) if lines[k].strip()), "")
            if lang in FENCE_LANGS:
                cmds = logical_lines(lines[i + 1:end])
                blocks.append(Block(path, i + 1, "fenced", cmds, runnable=before == RUNNABLE_MARK,
                                    text="\n".join(lines[i + 1:end]) + "\n"))
            i = end + 1
            prose.append((i, ""))  # a code block ends a paragraph
            continue
        if line.startswith("    ") and (i == 0 or not lines[i - 1].strip()):
            end = i
            while end < len(lines) and (lines[end].startswith("    ") or not lines[end].strip()):
                end += 1
            cmds = [c for c in logical_lines([x[4:] for x in lines[i:end]]) if is_command(c)]
            if cmds:
                blocks.append(Block(path, i + 1, "indented", cmds))
            i = end
            prose.append((i, ""))
            continue
        prose.append((i + 1, line))
        i += 1
    blocks.extend(inline_blocks(path, prose))
    return [b for b in blocks if any(is_command(c) for c in b.lines) or b.runnable]


def inline_blocks(path: Path, prose: list[tuple[int, str]]) -> list[Block]:
    """Inline code spans (they may wrap over lines within a paragraph) that are commands."""
    out = []
    paragraph: list[tuple[int, str]] = []
    for number, line in prose + [(0, "")]:
        if line.strip():
            paragraph.append((number, line))
            continue
        if paragraph:
            joined = " ".join(text for _, text in paragraph)
            for span in re.finditer(r"(?<!`)`([^`]+)`(?!`)", joined):
                command = " ".join(span.group(1).split())
                if program_of(command) in PROGRAMS - {"export", "cd"}:
                    out.append(Block(path, paragraph[0][0], "inline", [command]))
        paragraph = []
    return out


def split_commands(line: str) -> list[list[str]]:
    """A command line as simple commands (lists of words), split at && || ; | &; > kept as a word."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|<>")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    commands, current = [], []
    for word in lexer:
        if word in SEPARATORS:
            commands.append(current)
            current = []
        else:
            current.append(word)
    commands.append(current)
    return [c for c in commands if c]


def expand(word: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: variables.get(m.group(1), m.group(0)), word)


def looks_like_path(word: str) -> bool:
    if not word or "$" in word or "*" in word or "://" in word or word.startswith("-"):
        return False
    return "/" in word or word.endswith(PATH_SUFFIXES)


@dataclass
class Checker:
    """Checks the commands of every writeup against one fresh copy of the repository."""

    clone: Path
    help_usage: dict[Path, set[str] | str] = field(default_factory=dict)
    prepared_data: set[str] = field(default_factory=set)
    env_names: set[str] = field(default_factory=set)
    collecting: set[Path] | None = None  # scripts seen in a first pass (check_all), or None

    def __post_init__(self):
        # The data folders the writeups' own commands prepare, and the names the recipes read.
        for path in writeups(self.clone):
            for block in extract_blocks(path):
                for line in block.lines:
                    m = re.search(r"prepare_data\.py\s+\S+\s+--out\s+(\S+)", line)
                    if m:
                        self.prepared_data.add(os.path.normpath(m.group(1)))
        # Wherever the recipes' logic lives (bash, or the Python it calls), the name appears in it.
        sources = [p for pattern in ("scripts/**/*.sh", "scripts/**/*.py", "experiments/**/*.sh", "experiments/**/*.py")
                   for p in self.clone.glob(pattern)]
        for source in sources:
            self.env_names.update(re.findall(r"[A-Z][A-Z0-9_]+", source.read_text(encoding="utf-8")))

    def rel(self, path: Path) -> str:
        return os.path.relpath(path, self.clone)

    def check_path(self, word: str, cwd: Path, output: bool) -> str | None:
        """None if `word` names a file that exists (or that a command makes) from `cwd`; else why not."""
        if os.path.isabs(word):
            return f"{word}: an absolute path (a fresh clone has no such file)"
        target = Path(os.path.normpath(cwd / word))
        shown = f"{word} (from {self.rel(cwd) if cwd != self.clone else 'the repository root'})"
        if self.clone not in (target, *target.parents):
            return f"{shown}: outside the repository"
        rel = Path(self.rel(target))
        if target.exists() or rel.parts[0] == "runs":
            return None
        if rel.parts[0] == "data" and any(str(rel) == d or str(rel).startswith(d + os.sep) for d in self.prepared_data):
            return None
        if output and target.parent.is_dir():
            return None
        return f"{shown}: {rel} does not exist in a fresh copy and no command in the writeups makes it"

    def check_all(self, blocks: list[Block], workers: int = 4) -> dict[int, list[str]]:
        """Problems per block (by index). A first pass finds the scripts, whose `--help` then run
        side by side (each imports its backend: seconds apiece on a loaded machine)."""
        self.collecting = set()
        for block in blocks:
            self.check_block(block)
        scripts, self.collecting = sorted(self.collecting), None
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(self.flags_of, scripts))
        return {i: self.check_block(block) for i, block in enumerate(blocks)}

    def flags_of(self, script: Path) -> set[str] | str:
        """The --flags in a script's --help usage (cached), or the reason none could be read."""
        if self.collecting is not None:
            self.collecting.add(script)
            return set()
        if script not in self.help_usage:
            env = {**os.environ, "PYTHONPATH": str(self.clone / "scripts"), "OMP_NUM_THREADS": "1"}
            res = subprocess.run([sys.executable, str(script), "--help"], cwd=script.parent, env=env, capture_output=True,
                                 text=True, timeout=120)
            if res.returncode != 0:
                self.help_usage[script] = f"`python {self.rel(script)} --help` exited {res.returncode}: " \
                                          f"{(res.stderr.strip().splitlines() or [''])[-1]}"
            else:
                usage = res.stdout.split("\n\n")[0]
                self.help_usage[script] = set(re.findall(r"(?<![\w-])(--[A-Za-z][\w-]*)", usage))
        return self.help_usage[script]

    def check_block(self, block: Block) -> list[str]:
        problems: list[str] = []
        cwd, variables, exported = self.clone, {}, set()
        heredoc_end = None
        for line in block.lines:
            if heredoc_end is not None:  # a here-document's body is the program's input, not commands
                heredoc_end = None if line == heredoc_end else heredoc_end
                continue
            heredoc = re.search(r"<<-?\s*['\"]?(\w+)['\"]?", line)
            heredoc_end = heredoc.group(1) if heredoc else None
            if not is_command(line):
                continue
            try:
                commands = split_commands(line)
            except ValueError as exc:
                problems.append(f"`{line}`: cannot be parsed ({exc})")
                continue
            for words in commands:
                for problem in self.check_command(words, cwd, variables, exported):
                    problems.append(f"`{line}`: {problem}")
                if words[0] == "cd" and len(words) == 2:
                    cwd = Path(os.path.normpath(cwd / expand(words[1], variables)))
        return problems

    def check_command(self, words: list[str], cwd: Path, variables: dict[str, str], exported: set[str]) -> list[str]:
        problems: list[str] = []
        env: dict[str, str] = {}
        while words and ASSIGNMENT.match(words[0]):
            name, value = ASSIGNMENT.match(words[0]).groups()
            env[name] = expand(value, variables)
            words = words[1:]
        if not words:  # NAME=value on its own: a shell variable for the lines below
            variables.update(env)
            return problems
        words = [expand(w, variables) for w in words]
        program, args = words[0], words[1:]
        if program == "export":
            for word in args:
                m = ASSIGNMENT.match(word)
                if m:
                    variables[m.group(1)] = m.group(2)
                    env[m.group(1)] = m.group(2)
                exported.add(m.group(1) if m else word)
        for name, value in env.items():
            if looks_like_path(value):
                problems += filter(None, [self.check_path(value, cwd, output=name.endswith("_DIR"))])
        for i, word in enumerate(args):  # a redirection's target is an output
            if word in (">", ">>") and i + 1 < len(args):
                problems += filter(None, [self.check_path(args[i + 1], cwd, output=True)])
        args = [w for i, w in enumerate(args) if w not in (">", ">>") and (i == 0 or args[i - 1] not in (">", ">>"))]
        if program == "cd":
            if len(args) == 1 and not (cwd / args[0]).is_dir():
                problems.append(f"cd {args[0]}: no such folder in a fresh copy")
        elif program == "pip":
            problems += self.check_pip(args)
        elif program == "bash":
            problems += self.check_recipe(args, cwd, {**{k: variables.get(k, "") for k in exported}, **env})
        elif program in ("python", "python3", "torchrun"):
            problems += self.check_python(program, args, cwd)
        return problems

    def check_pip(self, args: list[str]) -> list[str]:
        pyproject = (self.clone / "pyproject.toml").read_text(encoding="utf-8")
        section = pyproject.split("[project.optional-dependencies]")[1].split("\n[")[0]
        extras = set(re.findall(r"^([\w-]+)\s*=", section, re.M))
        problems = []
        for word in args:
            m = re.match(r"^\.\[([\w,-]+)\]$", word)
            for extra in (m.group(1).split(",") if m else []):
                if extra not in extras:
                    problems.append(f"pip extra [{extra}] is not in pyproject.toml (extras: {sorted(extras)})")
        return problems

    def check_recipe(self, args: list[str], cwd: Path, env: dict[str, str]) -> list[str]:
        if not args:
            return []
        problems = list(filter(None, [self.check_path(args[0], cwd, output=False)]))
        for name in env:
            if name not in self.env_names and name not in EXTERNAL_ENV:
                problems.append(f"{name}: no recipe reads this environment variable")
        return problems

    def check_python(self, program: str, args: list[str], cwd: Path) -> list[str]:
        if program == "torchrun":  # torchrun's own flags come before the script
            while args and args[0].startswith("-"):
                args = args[1:]
        if not args or args[0] == "-m" or args[0] == "-c" or args[0] == "-":
            return []
        script, rest = args[0], args[1:]
        problem = self.check_path(script, cwd, output=False)
        # Without the script its flags are unknown (None: not checked), but its paths still are.
        flags = None if problem else self.flags_of(Path(os.path.normpath(cwd / script)))
        problems = [p for p in (problem, flags) if isinstance(p, str)]
        for i, word in enumerate(rest):
            if word.startswith("--"):
                flag, _, inline_value = word.partition("=")
                if isinstance(flags, set) and flag not in flags:
                    problems.append(f"{flag}: not an option of {script} (its --help lists {len(flags)})")
                value = inline_value or (rest[i + 1] if i + 1 < len(rest) and not rest[i + 1].startswith("-") else "")
                if looks_like_path(value):
                    problems += filter(None, [self.check_path(value, cwd, output=flag in OUTPUT_FLAGS)])
            elif looks_like_path(word) and not (i > 0 and rest[i - 1].startswith("--")):
                problems += filter(None, [self.check_path(word, cwd, output=False)])
        return problems
