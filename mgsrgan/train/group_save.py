"""A group's `last` checkpoints, saved as one: a stop at any moment leaves every member of a group at one step.

Each file is written whole (io/atomic.py), but a lockstep group of K members is K writes, and a stop between two
of them would leave members at steps no run ever passed through together. So a group saves by two-phase commit:
  1. each member's state goes to member_<k>/last.pending.safetensors (each written atomically);
  2. RUN/commit-m<i>-<j>-....json names the members, phase and step: from here on the new step is the truth;
  3. each pending file is renamed over member_<k>/last.safetensors, then the record is deleted.
`recover`, run before any member is read back, finishes a save that reached step 2 (renames the pending files
left) and drops one that did not (deletes its pending files): the `last` files then hold one step per group.
A group of one is a single atomic write.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from mgsrgan.config import Config
from mgsrgan.io.atomic import atomic_write
from mgsrgan.io.checkpoint import CheckpointError, read_meta
from mgsrgan.train.member import Member, member_dir, save_training_state

LAST = "last.safetensors"
PENDING = "last.pending.safetensors"
RECORD_GLOB = "commit-m*.json"


def record_path(run_dir: Path, indices: list[int]) -> Path:
    return Path(run_dir) / f"commit-m{'-'.join(str(k) for k in indices)}.json"


def save_group(members: list[Member], cfg: Config, run_dir: Path) -> None:
    """Write the training state of every member of a group (all at one phase and step) as one commit."""
    if len(members) == 1:
        save_training_state(members[0], cfg, member_dir(run_dir, members[0].index) / LAST)
        return
    phase, step = members[0].phase, members[0].step
    assert all((m.phase, m.step) == (phase, step) for m in members), "a group is saved at one phase and step"
    indices = [m.index for m in members]
    for member in members:
        save_training_state(member, cfg, member_dir(run_dir, member.index) / PENDING)
    record = record_path(run_dir, indices)
    text = json.dumps({"members": indices, "phase": phase, "step": step})
    atomic_write(record, lambda tmp: Path(tmp).write_text(text))
    _roll_forward(run_dir, indices, phase, step)
    record.unlink()


def _pending_at(path: Path, phase: str, step: int) -> bool:
    try:
        meta = read_meta(path)
    except CheckpointError:
        return False
    return (meta["phase"], meta["step"]) == (phase, step)


def _roll_forward(run_dir: Path, indices: list[int], phase: str, step: int) -> None:
    for k in indices:
        pending = member_dir(run_dir, k) / PENDING
        if pending.exists() and _pending_at(pending, phase, step):
            os.replace(pending, member_dir(run_dir, k) / LAST)


def recover(run_dir: Path) -> list[str]:
    """Finish or drop a group save that a stop interrupted, and delete half-written temporary files; returns what
    was done, one line each. Call before reading any `last` file, with no process saving into `run_dir`."""
    run_dir = Path(run_dir)
    done = []
    for record in sorted(run_dir.glob(RECORD_GLOB)):
        entry = json.loads(record.read_text())
        _roll_forward(run_dir, entry["members"], entry["phase"], entry["step"])
        record.unlink()
        done.append(f"finished the interrupted save of members {_names(entry['members'])} at {entry['phase']} step "
                    f"{entry['step']}")
    dropped = sorted(run_dir.glob(f"member_*/{PENDING}"))
    for pending in dropped:
        pending.unlink()
    if dropped:
        done.append(f"dropped an unfinished save ({len(dropped)} of its member files); the previous one stands")
    for tmp in run_dir.glob("member_*/.*.tmp"):  # io/atomic.py's temporary files of a write that was killed
        tmp.unlink()
    return done


def resume_point(run_dir: Path, index: int) -> tuple[str, int] | None:
    """(phase, step) a resume of member `index` starts from, read without changing anything (a save in progress or
    interrupted counts as done once its record exists); None when the member has no checkpoint yet."""
    run_dir = Path(run_dir)
    for record in run_dir.glob(RECORD_GLOB):
        try:
            entry = json.loads(record.read_text())
        except (OSError, ValueError):
            continue  # deleted or replaced while read: the save it belonged to has finished
        pending = member_dir(run_dir, index) / PENDING
        if index in entry["members"] and _pending_at(pending, entry["phase"], entry["step"]):
            return entry["phase"], entry["step"]
    try:
        meta = read_meta(member_dir(run_dir, index) / LAST)
    except CheckpointError:
        return None
    return meta["phase"], meta["step"]


def _names(indices: list[int]) -> str:
    return ", ".join(str(k) for k in indices)
