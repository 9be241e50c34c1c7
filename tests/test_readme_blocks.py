"""Every fenced bash and python block of README.md runs as written, so the README cannot drift from the code.

Each block runs in a scratch folder that mirrors the repo root (its code linked, its configs, data, examples and
weights copied), so commands see the paths a fresh clone has and every output lands in the scratch folder, never in
the repo; an output written beside its inputs (into the copies) fails the test. Bash blocks run line by line, in
order: through bash with this interpreter first on PATH, or, for the root scripts in IN_PROCESS, in this
interpreter as `python X.py` would run them; a `<name>` placeholder is the run folder the block's earlier lines
made. Lines that cannot run offline in seconds (installs, the suite itself, real training, evaluation on ../shared,
torchrun) are left out of their block by LONG, each reported as its own skipped `slow` case with the reason. A new
README line that LONG does not name runs here.
"""
from __future__ import annotations

import contextlib
import io
import os
import re
import runpy
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
LINKED = ("train.py", "inference.py", "evaluate.py", "mgsrgan", "tools", "config.yaml",
          "config_scaled.yaml")  # code and presets, read only
COPIED = ("configs", "data", "examples", "weights")  # where an output written beside its inputs would land
LINE_TIMEOUT_S = 600  # a README line that should take seconds; far past it (even on a loaded machine) is a hang
# Root scripts run in this interpreter (runpy, as `python X.py` would, without a torch import per line): they install
# no signal handlers. train.py does (SIGINT/SIGTERM), so it gets a process of its own.
IN_PROCESS = ("inference.py",)
LONG = (  # (pattern matched against a command line, why it is not run here)
    (r"^python -m venv", "makes a virtual environment: CI's .ci/run makes its own"),
    (r"^pip install", "installs packages: CI's .ci/run does it before the suite"),
    (r"^python -m pytest", "the test suite itself, of which this test is a part"),
    (r"^torchrun", "multi-process training of config.yaml (GPUs or nodes)"),
    (r"mgsrgan campaign", "the training campaign: days of training, resumed across stops (tests/test_campaign.py)"),
    (r"config_scaled\.yaml", "trains the scaled ensemble: about an hour on 2 CPU cores"),
    (r"train\.py --config config\.yaml", "the paper's x4 training: days, and ImageNet VGG19 weights"),
    (r"evaluate\.py", "evaluation on ../shared/data (Set5, Set14, BSD100): minutes, and needs ../shared"),
    (r"^mgsrgan serve", "starts a server that runs until Ctrl-C (tests/test_serve*.py run it on loopback)"),
    (r"^curl .*127\.0\.0\.1:8000", "talks to the server started above (tests/test_serve.py covers each call)"),
    (r"tests/test_serve_load\.py", "200 requests against a live server; writes tests/results (the repo's)"),
    (r"tools\.serve_screenshot", "drives Chromium against a live server; writes tools/results"),
)


def blocks() -> list[tuple[str, int, str]]:
    """(language, first line number, text) of every bash/python fenced block."""
    text = README.read_text()
    return [(m.group(1), text[:m.start()].count("\n") + 2, m.group(2)) for m in FENCE.finditer(text)
            if m.group(1) in ("bash", "python")]


def commands(text: str) -> list[tuple[int, str]]:
    """(offset in the block, command) per logical line of a bash block: backslash continuations joined, comments
    dropped (bash's own word splitting, by shlex)."""
    out, pending, start = [], "", 0
    for offset, line in enumerate(text.splitlines()):
        if not pending:
            start = offset
        pending += line.rstrip().removesuffix("\\") + " "
        if not line.rstrip().endswith("\\"):
            words = shlex.split(pending, comments=True)
            if words:
                out.append((start, shlex.join(words)))
            pending = ""
    return out


def why_long(command: str) -> str | None:
    return next((reason for pattern, reason in LONG if re.search(pattern, command)), None)


def cases():
    runnable, skipped = [], []
    for language, line, text in blocks():
        if language == "python":
            runnable.append(pytest.param(language, line, text, id=f"README.md:{line}-python"))
            continue
        for offset, command in commands(text):
            reason = why_long(command)
            if reason:
                skipped.append(pytest.param(command, reason, id=f"README.md:{line + offset}",
                                            marks=pytest.mark.slow))
        if any(why_long(c) is None for _, c in commands(text)):
            runnable.append(pytest.param(language, line, text, id=f"README.md:{line}-bash"))
    return runnable, skipped


RUNNABLE, LONG_LINES = cases()


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    for name in LINKED:
        (tmp_path / name).symlink_to(ROOT / name)
    for name in COPIED:
        shutil.copytree(ROOT / name, tmp_path / name)
    return tmp_path


def run_line(command: str, cwd: Path, monkeypatch) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of one README line run in `cwd`."""
    runs = sorted((cwd / "runs").iterdir(), key=lambda p: p.stat().st_mtime) if (cwd / "runs").is_dir() else []
    if "<name>" in command:
        assert runs, f"{command}: no run folder made by an earlier line to stand for <name>"
        command = command.replace("<name>", runs[-1].name)  # inside shlex.join's quotes
    words = shlex.split(command)
    if words[0] == "python" and words[1:2] and words[1] in IN_PROCESS:
        out, err = io.StringIO(), io.StringIO()
        with monkeypatch.context() as patch, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            patch.chdir(cwd)
            patch.setattr(sys, "argv", words[1:])
            try:
                runpy.run_path(str(cwd / words[1]), run_name="__main__")
                code = 0
            except SystemExit as stop:
                code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        return code, out.getvalue(), err.getvalue()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=LINE_TIMEOUT_S)
    return result.returncode, result.stdout, result.stderr


def data_files(root: Path) -> set[Path]:
    """The files under root's COPIED folders: a README command that writes beside its inputs (inference next to
    examples/, evaluation into weights/) would leave untracked files in a clone."""
    return {p.relative_to(root) for name in COPIED for p in (root / name).rglob("*") if p.is_file()}


@pytest.mark.parametrize("language, line, text", RUNNABLE)
def test_readme_block_runs_as_written(workspace, monkeypatch, language, line, text):
    before = data_files(workspace)
    if language == "python":
        monkeypatch.chdir(workspace)
        exec(compile(text, f"README.md:{line}", "exec"), {"__name__": "__readme__"})
    for offset, command in commands(text) if language == "bash" else []:
        if why_long(command) is None:
            code, out, err = run_line(command, workspace, monkeypatch)
            assert code == 0, f"README.md:{line + offset}: `{command}` exited {code}\n{out[-2000:]}\n{err[-2000:]}"
            assert "Traceback" not in err, f"README.md:{line + offset}: {err[-2000:]}"
    assert data_files(workspace) == before, f"README commands wrote into the repo: {data_files(workspace) ^ before}"


# Flags through which a README command names what it writes (inference.py's -o/--output_dir, curl's -o, evaluate.py's
# --out, tools' --out-dir, export's --output, download's --dest)
OUTPUT_FLAGS = ("-o", "--output", "--output_dir", "--output-dir", "--out", "--out-dir", "--dest")


def output_paths(command: str) -> list[str]:
    words = shlex.split(command)
    return [path for flag, path in zip(words, words[1:]) if flag in OUTPUT_FLAGS]


def git_ignores(path: str) -> bool:
    """Whether this checkout's .gitignore keeps `path`, a file or a folder, existing or not, out of `git status`
    (a folder pattern such as `out/` matches `out` only when git is told it is a folder)."""
    return any(subprocess.run(["git", "check-ignore", "-q", name], cwd=ROOT).returncode == 0
               for name in (path, path.rstrip("/") + "/"))


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="needs a git checkout")
def test_readme_commands_write_only_where_git_ignores():
    """What a README command writes, run as written in a clone (long lines included), does not show in `git status`:
    every output it names lies under an ignored folder (out/, runs/, ...)."""
    assert output_paths("python inference.py --input_dir examples --output_dir out_unc") == ["out_unc"]
    assert git_ignores("out/x2") and not git_ignores("out_unc")  # the check can fail: a folder of its own shows
    named = {path for language, _, text in blocks() if language == "bash"
             for _, command in commands(text) for path in output_paths(command)}
    assert named, "no README command names an output: the parser is broken"
    shown = sorted(path for path in named if not git_ignores(path))
    assert not shown, f"README commands write where git status shows them: {shown} (write under out/)"


@pytest.mark.parametrize("command, reason", LONG_LINES)
def test_readme_long_command(command, reason):
    pytest.skip(f"not run here: {reason}")


def test_the_readme_has_blocks_to_run():
    """The block parser finds the README's commands: a broken fence would otherwise test nothing, silently."""
    found = [c for language, _, text in blocks() if language == "bash" for _, c in commands(text)]
    assert any(c.startswith("python inference.py") for c in found)
    assert any(c.startswith("python train.py --config configs/smoke.yaml") for c in found)
    assert any(language == "python" for language, *_ in blocks())
    assert commands("a \\\n  b # note\n# only a comment\nc") == [(0, "a b"), (3, "c")]
