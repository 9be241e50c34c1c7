"""`mgsrgan campaign`: run the training campaign's stages, resuming wherever the last stretch stopped.

    nice -n 19 mgsrgan campaign                       # configs/campaign.yaml, state in ~/.mgsrgan/campaign
    mgsrgan campaign --state /big/disk/campaign --stages x2-pixel

Each stage is a `train.py` child process (its own process group of one run); this process watches it: the CPU
time of the child and its loader workers, the held-out validations it logs, and its best generator, which it
ships into the work tree whenever it improves (mgsrgan/train/campaign.py). Ctrl-C or SIGTERM asks the child to save
and stop; a kill -9 of this process sends the child SIGTERM (Linux parent-death signal) so it saves too.
"""
from __future__ import annotations

import argparse
import ctypes
import fcntl
import json
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

from mgsrgan.config import ConfigError, load_config
from mgsrgan.errors import UserError
from mgsrgan.io.checkpoint import CheckpointError, read_meta
from mgsrgan.train.campaign import (LOG_NAME, RUN_RECORD, SHIP_RECORD, Plan, Stage, TreeClock, append_record,
                                    best_shipped_psnr, load_plan, next_step, prepare_gan_source, read_json, read_log,
                                    ship, ship_members, stage_cpu_s, write_json)
from mgsrgan.train.member import member_dir

DEFAULT_PLAN = "configs/campaign.yaml"
DEFAULT_STATE = Path.home() / ".mgsrgan" / "campaign"
DEFAULT_LOG = f"weights/{LOG_NAME}"
PR_SET_PDEATHSIG = 1  # prctl option: the signal a child gets when its parent dies (linux/prctl.h)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="mgsrgan campaign", description="Run the training campaign: each stage of the plan in order, resumed "
        "exactly where the last stretch stopped (even after a kill -9), shipping each stage's generator into the "
        "work tree whenever its held-out validation improves.")
    parser.add_argument("--plan", default=DEFAULT_PLAN, help=f"campaign plan (default {DEFAULT_PLAN})")
    parser.add_argument("--state", type=Path, default=DEFAULT_STATE,
                        help=f"folder of the stages' run folders, outside the work tree (default {DEFAULT_STATE})")
    parser.add_argument("--log", type=Path,
                        help=f"campaign log, committed beside the weights (default REPO/{DEFAULT_LOG})")
    parser.add_argument("--repo", type=Path, default=Path.cwd(),
                        help="the work tree the stages' `ship` folders are relative to (default: this folder)")
    parser.add_argument("--stages", help="comma-separated stage names to run (default: all, in plan order)")
    parser.add_argument("--poll", type=float, default=10.0, help="seconds between looks at the child (default 10)")
    parser.add_argument("--tick", type=float, default=300.0,
                        help="seconds between CPU-time records in the log (default 300)")
    args = parser.parse_args(argv)
    args.log = args.log or args.repo / DEFAULT_LOG
    return args


def chosen_stages(plan: Plan, names: str | None) -> list[Stage]:
    if not names:
        return plan.stages
    wanted = [name.strip() for name in names.split(",") if name.strip()]
    known = [stage.name for stage in plan.stages]
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise UserError(f"--stages: unknown stage {unknown[0]!r}; the plan has {', '.join(known)}")
    return [stage for stage in plan.stages if stage.name in wanted]


def lock_state(state: Path):
    """An exclusive lock on STATE/.lock for this process's life: two campaigns on one state would train one run
    twice at once."""
    state.mkdir(parents=True, exist_ok=True)
    handle = open(state / ".lock", "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise UserError(f"{state}: another campaign is running on this state folder") from None
    return handle


def die_with_parent() -> None:
    """In the child before exec: SIGTERM it when this process dies, however it dies (the trainer then saves)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Watch:
    """Reads a running stage's new log lines and best generator; writes campaign records and ships."""

    def __init__(self, stage: Stage, run: Path, log: Path, repo: Path, cpu_before: float) -> None:
        self.stage, self.run, self.log, self.repo = stage, run, log, repo
        self.adversarial = bool(stage.gan_from)  # ships its members when it ends, not its best PSNR on the way
        self.cpu_before = cpu_before
        self.offset = int(read_json(run / RUN_RECORD).get("offset", 0))
        self.position = 0  # the whole run log is read once: validations a stopped campaign missed are recorded
        records = read_log(log)
        logged = [r["step"] for r in records if r.get("stage") == stage.name and r.get("event") == "val"]
        self.logged_step = max(logged, default=-1)
        self.best_shipped = best_shipped_psnr(records, stage.name)  # kept here: the log is not re-read per look
        self.batch = 0
        self.last_tick = time.monotonic()

    def look(self, cpu_s: float, tick_s: float) -> None:
        if not self.batch and (self.run / "config.yaml").is_file():
            self.batch = load_config(self.run / "config.yaml").data.batch_size
        for event in self._new_events():
            # a resumed run repeats the steps after its last checkpoint, and their validations: record each once
            if (event.get("event") == "val" and event.get("member") == 0
                    and self.offset + int(event["step"]) > self.logged_step):
                self._record("val", int(event["step"]), cpu_s, psnr=round(float(event["psnr"]), 4))
                self.logged_step = self.offset + int(event["step"])
        if not self.adversarial:
            self._ship_if_better(cpu_s)
        if time.monotonic() - self.last_tick >= tick_s:
            self._record("tick", None, cpu_s)
            self.last_tick = time.monotonic()

    def _new_events(self) -> list[dict]:
        path = self.run / "log.jsonl"
        if not path.is_file():
            return []
        with open(path) as fh:
            fh.seek(self.position)
            text = fh.read()
        complete = text[:text.rfind("\n") + 1]  # a line still being written waits for the next look
        self.position += len(complete.encode())
        return [json.loads(line) for line in complete.splitlines() if line.strip()]

    def _record(self, event: str, step: int | None, cpu_s: float, **fields) -> dict:
        record = {"time": round(time.time(), 1), "event": event, "stage": self.stage.name,
                  "cpu_s": round(self.cpu_before + cpu_s, 1), **fields}
        if step is not None:
            record["step"] = self.offset + step
            record["patches"] = record["step"] * self.batch
        append_record(self.log, record)
        return record

    def ship_finished(self, cpu_s: float) -> None:
        """An adversarial stage that ended: its members (pixel-loss and picked GAN generators) into its folder,
        once (a rerun after a stop finds the record and does nothing)."""
        if read_json(self.repo / self.stage.ship / SHIP_RECORD).get("stage") == self.stage.name:
            return
        members = {}
        for member in sorted(self.run.glob("member_*")):
            val = read_meta(member / "gan.safetensors").get("val") or {}
            members[member.name] = {key: val[key] for key in ("psnr", "stlpips_alex") if key in val}
        record = {"stage": self.stage.name, "cpu_s": round(self.cpu_before + cpu_s, 1), "members": members}
        ship_members(self.run, self.repo / self.stage.ship, record)
        append_record(self.log, {"time": round(time.time(), 1), "event": "ship", **record})

    def _ship_if_better(self, cpu_s: float) -> None:
        try:
            meta = read_meta(member_dir(self.run, 0) / "best.safetensors")
        except CheckpointError:
            return
        psnr = round(float(meta["val"]["psnr"]), 4)  # as the log records it
        if psnr <= self.best_shipped:
            return
        self.best_shipped = psnr
        record = {"stage": self.stage.name, "step": self.offset + int(meta["step"]), "psnr": psnr,
                  "cpu_s": round(self.cpu_before + cpu_s, 1),
                  "patches": (self.offset + int(meta["step"])) * self.batch}
        ship(self.run, self.repo / self.stage.ship, record)
        append_record(self.log, {"time": round(time.time(), 1), "event": "ship", **record})


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_stage(plan: Plan, stage: Stage, args: argparse.Namespace, repo: Path, stop: dict) -> int:
    step = next_step(plan, stage, args.state, repo)
    run = args.state / stage.name
    if step.kind == "done":  # a campaign stopped right after the run ended may not have shipped its best yet
        watch = Watch(stage, run, args.log, repo, stage_cpu_s(read_log(args.log), stage.name))
        watch.look(0.0, float("inf"))
        if watch.adversarial:
            watch.ship_finished(0.0)
        print(f"[campaign] {stage.name}: finished")
        return 0
    if step.kind == "gan":
        members = load_config(stage.config, stage.set).train.members
        prepare_gan_source(repo, plan, stage, args.state, members)
    if step.kind in ("fresh", "warm", "gan"):
        write_json(run / RUN_RECORD, {"offset": step.offset})
    print(f"[campaign] {stage.name}: {step.kind} {step.detail}", flush=True)
    records = read_log(args.log)
    append_record(args.log, {"time": round(time.time(), 1), "event": "stretch", "stage": stage.name,
                             "start": step.kind, "cpu_s": stage_cpu_s(records, stage.name)})
    cpu_at_start = children_cpu_s()
    child = subprocess.Popen([sys.executable, "-m", "mgsrgan", "train", "--no-progress", *step.args],
                             preexec_fn=die_with_parent)
    stop["child"] = child
    clock = TreeClock(child.pid)
    watch = Watch(stage, run, args.log, repo, stage_cpu_s(records, stage.name))
    while True:
        try:
            rc = child.wait(timeout=args.poll)
        except subprocess.TimeoutExpired:
            rc = None
        # once reaped, the child's whole tree is in this process's RUSAGE_CHILDREN (the last poll may miss a bit)
        cpu_s = clock.poll() if rc is None else max(sum(clock.seen.values()), children_cpu_s() - cpu_at_start)
        watch.look(cpu_s, args.tick if rc is None else 0.0)
        if rc is not None:
            stop["child"] = None
            if rc == 0 and watch.adversarial:
                watch.ship_finished(cpu_s)
            return rc


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop: dict = {"child": None}

    def forward(signum, frame):  # the child saves its step and exits; this loop then records and returns
        child = stop["child"]
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGINT if signum == signal.SIGINT else signal.SIGTERM)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        plan = load_plan(args.plan)
        stages = chosen_stages(plan, args.stages)
        lock = lock_state(args.state)
        repo = args.repo
        for stage in stages:
            rc = run_stage(plan, stage, args, repo, stop)
            if rc in (130, 143):
                print(f"[campaign] stopped during {stage.name}; the same command continues it", file=sys.stderr)
                return rc
            if rc != 0:
                raise UserError(f"stage {stage.name}: train.py exited with status {rc} "
                                f"(its log: {args.state / stage.name / 'log.jsonl'})")
        lock.close()
        print("[campaign] every stage finished")
        return 0
    except (UserError, ConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
