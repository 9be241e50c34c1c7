"""The training campaign: stages of training runs that outlive the machine they run on.

A campaign is a plan (`configs/campaign.yaml`): stages run in order, each one training run (`train.py`) in the
state folder (`STATE/<stage>`), resumed exactly after any stop (`--resume`), even a kill -9. Whenever a stage's
held-out validation PSNR beats what its shipping folder holds, the generator is copied there (a folder in the work
tree, committed to git), and a line goes to the campaign log beside the weights (`LOG_NAME`): CPU-hours, patches
seen, validation PSNR. A machine that comes back without its state folder warm-restarts each unfinished stage from
its shipped generator, so a lost machine costs the steps since the last shipped validation, not the campaign.

Here: the plan, what a stage does next, the log's arithmetic and the CPU clock. The process that runs it all is
`mgsrgan/cli/campaign.py`.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from mgsrgan.config import ConfigError, from_mapping, load_config, read_yaml
from mgsrgan.io.atomic import atomic_write
from mgsrgan.io.checkpoint import Side
from mgsrgan.train.group_save import resume_point
from mgsrgan.train.member import DONE, member_dir

LOG_NAME = "campaign_log.jsonl"  # beside the weights: committed with the weights, so it survives the machine
SHIPPED_FILE = f"member_0/{Side.PIXEL}.safetensors"  # a shipping folder is a one-member run folder (train.init_from)
SHIP_RECORD = "campaign.json"  # beside SHIPPED_FILE: which stage shipped it, at which campaign step
RUN_RECORD = "campaign.json"  # in a stage's run folder: {"offset": campaign step of the run's step 0}


@dataclass
class Stage:
    """One training run of the campaign. `set` overrides the config as train.py's --set does. `init_from` names an
    earlier stage whose shipped generator initialises this one (another scale: its body). `gan_from` names an
    earlier pixel-loss stage whose shipped generator starts the adversarial phase of every member of this one
    (the SRGAN paper's order: each SRGAN generator from the one SRResNet); such a stage ships when it ends."""
    name: str
    config: str
    ship: str  # shipping folder, relative to the repo root: weights/campaign/<name>
    set: list[str] = field(default_factory=list)
    init_from: str = ""
    gan_from: str = ""


@dataclass
class Plan:
    stages: list[Stage]


@dataclass(frozen=True)
class Step:
    """What a stage does next. kind: "done", "resume" (its run folder has a checkpoint), "warm" (no run folder but a
    shipped generator of this stage: a new run from it, for the steps still to go), "gan" or "fresh"."""
    kind: str
    args: tuple[str, ...] = ()  # train.py's arguments
    detail: str = ""
    offset: int = 0  # campaign step of the new run's step 0 (a warm restart continues the count)


def load_plan(path: str | Path) -> Plan:
    """The campaign plan, strict: unknown keys, missing fields, unknown `init_from` stages and configs that do not
    load with their overrides are ConfigErrors before anything runs."""
    path = Path(path)
    raw = read_yaml(path, "campaign plan")
    stages = raw.get("stages") if isinstance(raw, dict) else None
    if not isinstance(stages, list) or not stages:
        raise ConfigError(f"{path}: expected a non-empty list `stages:`")
    plan = Plan(stages=[from_mapping(Stage, item, f"stages[{i}]", str(path)) for i, item in enumerate(stages)])
    seen: set[str] = set()
    for stage in plan.stages:
        if stage.name in seen:
            raise ConfigError(f"{path}: stage {stage.name!r} appears twice")
        for key in ("init_from", "gan_from"):
            if getattr(stage, key) and getattr(stage, key) not in seen:
                raise ConfigError(f"{path}: stage {stage.name!r}: {key} {getattr(stage, key)!r} is not an earlier stage")
        if stage.init_from and stage.gan_from:
            raise ConfigError(f"{path}: stage {stage.name!r}: give init_from or gan_from, not both")
        seen.add(stage.name)
        load_config(stage.config, stage.set)  # its errors now, not hours later
    return plan


def stage_of(plan: Plan, name: str) -> Stage:
    return next(stage for stage in plan.stages if stage.name == name)


def next_step(plan: Plan, stage: Stage, state: Path, repo: Path) -> Step:
    """What `stage` does next, from its run folder STATE/<name> and its shipping folder (pure reading)."""
    run = state / stage.name
    point = resume_point(run, 0) if run.is_dir() else None
    if point is not None:
        if point[0] == DONE:
            return Step("done", detail="finished")
        # runtime settings (threads, compile, ...) change speed, not results: the plan's current ones apply on resume
        runtime = [arg for assignment in stage.set if assignment.startswith("runtime.")
                   for arg in ("--set", assignment)]
        return Step("resume", ("--resume", str(run), *runtime), f"from {point[0]} step {point[1]}")
    base = ["--config", stage.config, "--name", stage.name, "--set", f"train.out_dir={state}"]
    base += [arg for assignment in stage.set for arg in ("--set", assignment)]
    if stage.gan_from and read_json(repo / stage.ship / SHIP_RECORD).get("stage") == stage.name:
        return Step("done", detail="shipped")  # its members are committed: a lost state folder does not redo it
    if stage.gan_from:  # adversarial stages are short: one stopped before it shipped starts again
        shipped_file(repo, plan, stage.gan_from, stage.name)
        return Step("gan", tuple(base + ["--pretrained", str(gan_source(state, stage))]),
                    f"adversarial phase of every member from {stage.gan_from}")
    shipped = shipped_step(repo / stage.ship, stage.name)
    if shipped:
        total = load_config(stage.config, stage.set).train.pretrain_steps
        left = max(total - shipped, 1)
        return Step("warm", tuple(base + ["--set", f"train.init_from={repo / stage.ship}",
                                          "--set", f"train.pretrain_steps={left}"]),
                    f"from its shipped generator (step {shipped}), {left} steps to go", offset=shipped)
    if stage.init_from:
        base += ["--set", f"train.init_from={shipped_file(repo, plan, stage.init_from, stage.name).parents[1]}"]
    return Step("fresh", tuple(base), "from scratch" if not stage.init_from else f"from {stage.init_from}")


def shipped_file(repo: Path, plan: Plan, source: str, needed_by: str) -> Path:
    """The generator stage `source` has shipped; ConfigError when it has not shipped one yet."""
    path = repo / stage_of(plan, source).ship / SHIPPED_FILE
    if not path.is_file():
        raise ConfigError(f"stage {needed_by}: needs {path} (stage {source} has not shipped a generator yet)")
    return path


def gan_source(state: Path, stage: Stage) -> Path:
    """STATE/<stage>.source: the run-like folder whose member_<k>/pretrain.safetensors start the stage's members
    (train.py --pretrained); `prepare_gan_source` fills it."""
    return state / f"{stage.name}.source"


def prepare_gan_source(repo: Path, plan: Plan, stage: Stage, state: Path, members: int) -> None:
    """One copy of stage.gan_from's shipped generator per member: every member starts from the same SRResNet and
    differs by its own seed, patch stream and discriminator."""
    source = shipped_file(repo, plan, stage.gan_from, stage.name)
    for k in range(members):
        target = member_dir(gan_source(state, stage), k) / f"{Side.PIXEL}.safetensors"
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, lambda tmp: shutil.copyfile(source, tmp))


def shipped_step(folder: Path, stage: str) -> int:
    """The campaign step at which `stage` last shipped into `folder` (0: nothing of this stage there)."""
    record = read_json(folder / SHIP_RECORD)
    return int(record.get("step", 0)) if record.get("stage") == stage and (folder / SHIPPED_FILE).is_file() else 0


def read_json(path: Path) -> dict:
    """A small JSON record, {} when missing or unreadable (a half-written one cannot exist: atomic writes)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def write_json(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(record, indent=1) + "\n"))


def read_log(path: Path) -> list[dict]:
    """The campaign log's records, oldest first ([] when there is none); a torn last line (a kill mid-write) is
    skipped."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def stage_cpu_s(records: list[dict], stage: str) -> float:
    """CPU-seconds `stage` has spent so far by the log: its latest record's running total."""
    own = [r for r in records if r.get("stage") == stage and "cpu_s" in r]
    return float(own[-1]["cpu_s"]) if own else 0.0


def best_shipped_psnr(records: list[dict], stage: str) -> float:
    ships = [r["psnr"] for r in records if r.get("stage") == stage and r.get("event") == "ship" and "psnr" in r]
    return max(ships) if ships else float("-inf")


def ship(run: Path, folder: Path, record: dict) -> None:
    """Copy the run's best generator and config into the shipping folder, then the campaign record (stage,
    campaign step, validation PSNR, CPU-seconds, patches). Each file is written atomically; a stop between them
    leaves an older record, which only makes a warm restart redo a few steps."""
    target = folder / SHIPPED_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, lambda tmp: shutil.copyfile(member_dir(run, 0) / "best.safetensors", tmp))
    atomic_write(folder / "config.yaml", lambda tmp: shutil.copyfile(run / "config.yaml", tmp))
    write_json(folder / SHIP_RECORD, {key: record[key] for key in ("stage", "step", "psnr", "cpu_s", "patches")})


def ship_members(run: Path, folder: Path, record: dict) -> None:
    """A finished adversarial stage: every member's pixel-loss and GAN generators and the run's config into the
    shipping folder (each file atomically), then the record."""
    members = sorted(d.name for d in run.iterdir() if d.is_dir() and d.name.startswith("member_"))
    for name in members:
        for side in Side:
            target = folder / name / f"{side}.safetensors"
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(target, lambda tmp: shutil.copyfile(run / name / f"{side}.safetensors", tmp))
    atomic_write(folder / "config.yaml", lambda tmp: shutil.copyfile(run / "config.yaml", tmp))
    write_json(folder / SHIP_RECORD, record)


def append_record(path: Path, record: dict) -> None:
    """One JSON line, flushed and fsynced: the log is the campaign's memory across machines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fh.write(json.dumps(record) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


class TreeClock:
    """CPU-seconds (user + system) spent by a process and every descendant it has had, read from /proc. A
    descendant's time counts from the first poll that sees it to its last; poll often enough for short-lived
    children (the trainer's loader workers live as long as the run)."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.seen: dict[int, float] = {}
        self.tick = os.sysconf("SC_CLK_TCK")

    def poll(self) -> float:
        parents: dict[int, int] = {}
        times: dict[int, float] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue  # gone while read
            parents[int(entry.name)] = int(fields[1])
            times[int(entry.name)] = (int(fields[11]) + int(fields[12])) / self.tick
        tree, frontier = {self.root}, [self.root]
        while frontier:
            pid = frontier.pop()
            children = [child for child, parent in parents.items() if parent == pid and child not in tree]
            tree.update(children)
            frontier += children
        for pid in tree & times.keys():
            self.seen[pid] = max(self.seen.get(pid, 0.0), times[pid])
        return sum(self.seen.values())
