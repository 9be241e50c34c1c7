"""Stops at any moment: a lockstep group's `last` files always resume from one step, a signal saves the current
step and says where --resume starts, and the ETA covers the phases still to come."""
from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch

import mgsrgan.train.loop as training
from mgsrgan.cli.train import main as train_main
from mgsrgan.io.checkpoint import load_tensors, read_meta
from mgsrgan.train import group_save
from mgsrgan.train.loop import Stopped, run_eta, train
from tests.conftest import make_context, tiny_config

ROOT = Path(__file__).resolve().parents[1]


class Crash(Exception):
    """A process killed at this point: nothing after it runs."""


def networks_and_optimizers(run_dir: Path, members: int) -> list[dict[str, torch.Tensor]]:
    """Every member's `last` tensors but the recorded torch RNG state (training draws no torch random numbers,
    while each DataLoader consumes one seed from it: resumed runs make more loaders)."""
    return [{k: v for k, v in load_tensors(run_dir / f"member_{k}" / "last.safetensors").items()
             if not k.startswith("rng.")} for k in range(members)]


def assert_same_training(a: Path, b: Path, members: int = 2) -> None:
    for first, second in zip(networks_and_optimizers(a, members), networks_and_optimizers(b, members)):
        assert first.keys() == second.keys()
        for key in first:
            assert torch.equal(first[key], second[key]), key
    for k in range(members):
        for name in ("pretrain", "gan"):
            assert read_meta(a / f"member_{k}" / f"{name}.safetensors")["val"] == \
                read_meta(b / f"member_{k}" / f"{name}.safetensors")["val"]


@pytest.fixture(scope="module")
def lockstep_straight(tmp_path_factory) -> tuple[dict, Path]:
    tmp = tmp_path_factory.mktemp("straight")
    raw = tiny_config(tmp, schedule="lockstep", checkpoint_every=1)
    train(make_context(raw, tmp / "run"), resume=False)
    return raw, tmp / "run"


@pytest.mark.parametrize("target,occurrence", [
    ("member_1/last.safetensors", 1),  # step 1: member 0's `last` moved on, member 1's not yet (the commit rolls on)
    ("member_1/last.pending.safetensors", 2),  # phase-1 end: member 0's new state written, member 1's not (dropped)
    ("commit-m0-1.json", 1),  # the first save ever, every file written but not committed: no checkpoint yet
])
def test_a_lockstep_group_stopped_inside_a_save_resumes_at_one_step_exactly(
        lockstep_straight, tmp_path, monkeypatch, target, occurrence):
    """A kill between two members' writes left member 0 a step ahead and `--resume` died on "a lockstep group
    always shares its step" (or, at a phase end, member 1 finished phase 1 alone)."""
    raw, straight = lockstep_straight
    run_dir = tmp_path / "run"
    real_replace, seen = os.replace, []

    def replace(src, dst):
        name = Path(dst).relative_to(run_dir).as_posix() if str(dst).startswith(str(run_dir)) else ""
        seen.append(name)
        if name == target and seen.count(name) == occurrence:
            raise Crash
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(Crash):
        train(make_context(raw, run_dir), resume=False)
    monkeypatch.setattr(os, "replace", real_replace)
    points = {group_save.resume_point(run_dir, k) for k in range(2)}
    assert len(points) == 1  # what a resume reads: one phase and step for the group (or none at all)
    train(make_context(raw, run_dir), resume=True)
    assert not list(run_dir.glob("commit-*.json")) and not list(run_dir.glob("member_*/last.pending.*"))
    assert_same_training(straight, run_dir)


def test_recover_finishes_a_committed_save_and_drops_an_uncommitted_one(tmp_path):
    raw = tiny_config(tmp_path, schedule="lockstep", pretrain_steps=1, gan_iterations=0)
    run_dir = tmp_path / "run"
    members = train(make_context(raw, run_dir), resume=False)
    cfg = make_context(raw, run_dir).cfg
    for member in members:
        member.phase, member.step = "gan", 7
    for member in members:  # phase 1 of a save: pending files, no record
        group_save.save_training_state(member, cfg, run_dir / f"member_{member.index}" / group_save.PENDING)
    assert group_save.recover(run_dir) == ["dropped an unfinished save (2 of its member files); the previous one stands"]
    assert {read_meta(run_dir / f"member_{k}" / "last.safetensors")["phase"] for k in range(2)} == {"done"}
    for member in members:
        group_save.save_training_state(member, cfg, run_dir / f"member_{member.index}" / group_save.PENDING)
    group_save.record_path(run_dir, [0, 1]).write_text('{"members": [0, 1], "phase": "gan", "step": 7}')
    assert group_save.resume_point(run_dir, 1) == ("gan", 7)  # committed: the truth before the renames
    (run_dir / "member_0" / ".last.safetensors.abc.tmp").write_bytes(b"half a file")
    assert group_save.recover(run_dir) == ["finished the interrupted save of members 0, 1 at gan step 7"]
    assert [read_meta(run_dir / f"member_{k}" / "last.safetensors")["step"] for k in range(2)] == [7, 7]
    assert not list(run_dir.glob("member_0/.*.tmp")) and not list(run_dir.glob("commit-*"))


@pytest.mark.parametrize("schedule", ["sequential", "lockstep"])
def test_a_stop_request_saves_the_current_step_and_resumes_exactly(tmp_path, monkeypatch, schedule):
    """No periodic checkpoint yet (checkpoint_every 100): the stop itself saves, for the whole group."""
    raw = tiny_config(tmp_path, schedule=schedule, pretrain_steps=4, gan_iterations=2, checkpoint_every=100)
    straight = tmp_path / "straight"
    train(make_context(raw, straight), resume=False)
    ctx = make_context(raw, tmp_path / "run")
    real, calls = training.gan_step, [0]

    def step(*args, **kwargs):
        calls[0] += 1
        if calls[0] == 3:
            ctx.stop.requested = True  # as the signal handler does, mid-step
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "gan_step", step)
    with pytest.raises(Stopped) as stopped:
        train(ctx, resume=False)
    monkeypatch.setattr(training, "gan_step", real)
    if schedule == "lockstep":  # both members made 2 gan steps: call 3 is member 0's third
        assert stopped.value.resume == "members 0, 1 from gan step 2"
    else:
        assert stopped.value.resume == "member 0 from gan step 3; member 1 from scratch (no checkpoint yet)"
    train(make_context(raw, tmp_path / "run"), resume=True)
    assert_same_training(straight, tmp_path / "run")


def smoke_args(tmp_path: Path, *extra: str) -> list[str]:
    return ["--config", str(ROOT / "configs" / "smoke.yaml"), "--no-progress",
            "--set", f"data.train_dirs=[{ROOT / 'data' / 'smoke'}]", "--set", f"data.val_dir={ROOT / 'data' / 'smoke'}",
            "--set", f"train.out_dir={tmp_path}", "--set", "train.checkpoint_every=100", "--set", "runtime.threads=1",
            *extra]


@pytest.mark.parametrize("signum,code,said", [(signal.SIGINT, 130, "Ctrl-C (SIGINT)"), (signal.SIGTERM, 143, "SIGTERM")])
def test_ctrl_c_and_sigterm_save_the_step_and_say_where_resume_starts(tmp_path, monkeypatch, capsys, signum, code,
                                                                       said):
    """Ctrl-C at minute 3 said the last checkpoints were intact when none existed, and --resume began at step 0
    without a word."""
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)  # SIG_IGN under nohup, say
    assert train_main(smoke_args(tmp_path, "--name", "straight")) == 0
    real, calls = training.pixel_step, [0]

    def step(*args, **kwargs):
        calls[0] += 1
        if calls[0] == 3:
            os.kill(os.getpid(), signum)  # delivered to the handler train.py installs, between two bytecodes
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "pixel_step", step)
    capsys.readouterr()
    assert train_main(smoke_args(tmp_path, "--name", "stopped")) == code
    monkeypatch.setattr(training, "pixel_step", real)
    run = tmp_path / "stopped"
    err = capsys.readouterr().err
    assert f"stopped by {said} and saved; continue with the same command plus --resume {run}: it starts " \
           "member 0 from pretrain step 3; member 1 from scratch (no checkpoint yet)" in err
    assert read_meta(run / "member_0" / "last.safetensors")["step"] == 3
    assert train_main(["--resume", str(run), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"resume {run}: member 0 from pretrain step 3; member 1 from scratch (no checkpoint yet)" in out
    assert_same_training(tmp_path / "straight", run)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before  # main() puts them back


def test_the_resume_hint_is_a_line_of_its_own_after_the_progress_bars(tmp_path, monkeypatch, capsys):
    """With progress bars on, the Ctrl-C hint was glued to a bar's line and the bar redrew after it."""
    real, calls = training.pixel_step, [0]

    def step(*args, **kwargs):
        calls[0] += 1
        if calls[0] == 3:
            os.kill(os.getpid(), signal.SIGINT)
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "pixel_step", step)
    args = [a for a in smoke_args(tmp_path, "--name", "bars") if a != "--no-progress"]
    assert train_main(args) == 130
    err = capsys.readouterr().err
    assert "pretrain m0" in err  # the bar was drawn
    start = err.index("stopped by Ctrl-C (SIGINT)")
    assert start > 0 and err[start - 1] == "\n"  # begins a line
    assert "\r" not in err[start:] and "pretrain m0" not in err[start:]  # no bar drawn over or after it


def test_resume_of_a_run_without_checkpoints_says_it_starts_from_scratch(tmp_path, capsys):
    assert train_main(smoke_args(tmp_path, "--name", "done", "--set", "train.pretrain_steps=1",
                                 "--set", "train.gan_iterations=0")) == 0
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.yaml").write_text((tmp_path / "done" / "config.yaml").read_text())
    capsys.readouterr()
    assert train_main(["--resume", str(empty), "--no-progress"]) == 0
    assert f"resume {empty}: from scratch: no checkpoint yet" in capsys.readouterr().out
    assert train_main(["--resume", str(tmp_path / "done"), "--no-progress"]) == 0
    assert f"resume {tmp_path / 'done'}: members 0, 1 done" in capsys.readouterr().out


def test_eta_covers_the_phases_and_members_still_to_come(tmp_path):
    raw = tiny_config(tmp_path, pretrain_steps=10, gan_iterations=2)  # gan: 2 x (1 D + 1 G) = 4 steps
    ctx = make_context(raw, tmp_path / "run")
    first, second = (training.build_member(ctx.cfg, k, ctx.device) for k in range(2))
    ctx.groups = [[first], [second]]  # sequential
    first.step = 4
    # at 2 steps/s: 6 + 4 steps of member 0, then 10 + 4 of member 1
    assert run_eta(ctx, "pretrain", 2.0) == pytest.approx((6 + 4 + 10 + 4) / 2)
    ctx.rates["gan"] = 0.5  # measured: the adversarial steps of another member took longer
    assert run_eta(ctx, "pretrain", 2.0) == pytest.approx((6 + 10) / 2 + (4 + 4) / 0.5)
    first.phase, first.step = "gan", 1
    ctx.rates["pretrain"] = 2.0  # measured in member 0's phase 1
    assert run_eta(ctx, "gan", 1.0) == pytest.approx(3 / 1 + 10 / 2 + 4 / 1)
    ctx.groups = [[first, second]]  # lockstep: one group, one step for both
    second.phase, second.step = "gan", 1
    assert run_eta(ctx, "gan", 1.0) == pytest.approx(3.0)


def test_data_workers_leave_the_stop_signals_to_the_training_process():
    from mgsrgan.train.data import TrainPatches, make_loader
    loader = make_loader(TrainPatches.__new__(TrainPatches), batch_size=2, start_step=0, stop_step=1, num_workers=1)
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        loader.worker_init_fn(0)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN and signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
