"""The training campaign: a strict plan, what each stage does next, shipping on improvement, CPU accounting, and
a campaign killed with SIGKILL at any moment ending where an uninterrupted one ends."""
from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from mgsrgan.cli.campaign import main as campaign_main
from mgsrgan.config import ConfigError
from mgsrgan.train.campaign import (SHIPPED_FILE, TreeClock, load_plan, next_step, read_log, stage_cpu_s)
from tests.conftest import tiny_config

ROOT = Path(__file__).resolve().parents[1]


def write_plan(tmp_path: Path, steps: tuple[int, ...] = (12, 6), name: str = "plan", **first) -> Path:
    """A plan of one or two stages on the tiny config (one member, pixel loss only), the second stage from the
    first, shipping into tmp_path/<name>-ship."""
    config = tmp_path / "tiny.yaml"
    raw = tiny_config(tmp_path, members=1, gan_iterations=0, val_every=3, checkpoint_every=3, log_every=3)
    raw["runtime"]["amp"] = "none"  # bit-exact comparisons
    config.write_text(yaml.safe_dump(raw))
    stages = [{"name": "a", "config": str(config), "ship": str(tmp_path / f"{name}-ship" / "a"),
               "set": [f"train.pretrain_steps={steps[0]}"], **first}]
    if len(steps) > 1:
        stages.append({"name": "b", "config": str(config), "ship": str(tmp_path / f"{name}-ship" / "b"),
                       "init_from": "a",
                       "set": [f"train.pretrain_steps={steps[1]}"]})
    plan = tmp_path / f"{name}.yaml"
    plan.write_text(yaml.safe_dump({"stages": stages}))
    return plan


def campaign_args(tmp_path: Path, plan: Path, state: str = "state") -> list[str]:
    return ["--plan", str(plan), "--state", str(tmp_path / state), "--log", str(tmp_path / f"{state}-log.jsonl"),
            "--poll", "0.2"]


def test_the_plan_is_strict(tmp_path):
    plan = write_plan(tmp_path, steps=(12,), ship_to="x")
    with pytest.raises(ConfigError, match="unknown key stages\\[0\\].ship_to; did you mean"):
        load_plan(plan)
    raw = yaml.safe_load(write_plan(tmp_path).read_text())
    raw["stages"][1]["init_from"] = "later"
    plan.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="init_from 'later' is not an earlier stage"):
        load_plan(plan)
    del raw["stages"][0]["ship"]
    plan.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="stages\\[0\\]: missing ship"):
        load_plan(plan)
    raw = yaml.safe_load(write_plan(tmp_path).read_text())
    raw["stages"][0]["set"] = ["train.pretrain_stepz=3"]
    plan.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="pretrain_stepz"):
        load_plan(plan)


def test_the_shipped_plan_loads():
    os.chdir(ROOT)
    plan = load_plan(ROOT / "configs" / "campaign.yaml")
    names = [s.name for s in plan.stages]
    assert names[0] == "x2-pixel" and names.index("x4-pixel") < names.index("x4-gan") < names.index("x4-real-gan")
    assert names.index("x4-pixel-early") < names.index("x4-gan-early")


def test_a_campaign_ships_on_improvement_and_logs_cpu(tmp_path):
    plan = write_plan(tmp_path)
    assert campaign_main(campaign_args(tmp_path, plan)) == 0
    records = read_log(tmp_path / "state-log.jsonl")
    vals = [r for r in records if r["event"] == "val" and r["stage"] == "a"]
    assert [r["step"] for r in vals] == [3, 6, 9, 12]
    assert [r["patches"] for r in vals] == [6, 12, 18, 24]  # batch 2
    ships = [r for r in records if r["event"] == "ship" and r["stage"] == "a"]
    shipped_psnr = [r["psnr"] for r in ships]
    assert shipped_psnr == sorted(set(shipped_psnr))  # each only when it improves (a fast run may skip some)
    assert shipped_psnr[-1] == max(v["psnr"] for v in vals) and set(shipped_psnr) <= {v["psnr"] for v in vals}
    assert 0 < stage_cpu_s(records, "a") < 300
    shipped = load_file(tmp_path / "plan-ship" / "a" / SHIPPED_FILE)
    best = load_file(tmp_path / "state" / "a" / "member_0" / "best.safetensors")
    assert shipped.keys() == best.keys() and all((shipped[k] == best[k]).all() for k in best)
    assert json.loads((tmp_path / "plan-ship" / "a" / "campaign.json").read_text())["psnr"] == ships[-1]["psnr"]
    # stage b started from a's shipped generator; a second run finds both finished and trains nothing
    saved_b = yaml.safe_load((tmp_path / "state" / "b" / "config.yaml").read_text())
    assert saved_b["train"]["init_from"] == str(tmp_path / "plan-ship" / "a")
    plan_obj = load_plan(plan)
    assert next_step(plan_obj, plan_obj.stages[0], tmp_path / "state", tmp_path).kind == "done"
    assert campaign_main(campaign_args(tmp_path, plan)) == 0
    assert read_log(tmp_path / "state-log.jsonl") == records


def test_a_lost_state_folder_warm_restarts_from_the_shipped_generator(tmp_path):
    plan = write_plan(tmp_path, steps=(12,))
    assert campaign_main(campaign_args(tmp_path, plan)) == 0
    shipped_at = json.loads((tmp_path / "plan-ship" / "a" / "campaign.json").read_text())["step"]
    plan_obj = load_plan(plan)
    step = next_step(plan_obj, plan_obj.stages[0], tmp_path / "new-state", tmp_path)
    assert step.kind == "warm" and step.offset == shipped_at  # the campaign's step count goes on from there
    assert f"train.init_from={tmp_path / 'plan-ship' / 'a'}" in step.args
    assert f"train.pretrain_steps={12 - shipped_at if shipped_at < 12 else 1}" in step.args


def test_a_resumed_stage_takes_the_plans_runtime_settings(tmp_path, monkeypatch):
    """A run resumes with its saved config, but the plan's runtime.* settings (speed, not results) apply."""
    from mgsrgan.train import campaign

    plan = write_plan(tmp_path, steps=(12,), set=["train.pretrain_steps=12", "runtime.threads=1"])
    (tmp_path / "state" / "a").mkdir(parents=True)
    monkeypatch.setattr(campaign, "resume_point", lambda run, member: ("pretrain", 6))
    plan_obj = load_plan(plan)
    step = next_step(plan_obj, plan_obj.stages[0], tmp_path / "state", tmp_path)
    assert step.kind == "resume"
    assert step.args == ("--resume", str(tmp_path / "state" / "a"), "--set", "runtime.threads=1")


def test_the_clock_counts_a_childs_cpu_time():
    busy = subprocess.Popen([sys.executable, "-c", "import time\nt = time.process_time()\n"
                             "while time.process_time() - t < 0.6: pass"])
    clock = TreeClock(os.getpid())
    while busy.poll() is None:
        clock.poll()
        time.sleep(0.05)
    assert clock.seen.get(busy.pid, 0) >= 0.4


def test_sigkilled_campaigns_end_bit_identical_to_an_uninterrupted_one(tmp_path):
    """kill -9 of the campaign alone (its child saves on the parent-death signal) and of the whole process group
    (a machine's processes all gone), at moments read from the campaign's own progress lines, so that every kill
    lands mid-training however fast the machine; rerunning the same command finishes the plan with the same
    weights, optimizer and RNG state as one uninterrupted campaign."""
    straight = write_plan(tmp_path, steps=(30, 9), name="straight")
    assert campaign_main(campaign_args(tmp_path, straight, "straight")) == 0
    plan = write_plan(tmp_path, steps=(30, 9), name="killed")
    command = [sys.executable, "-m", "mgsrgan", "campaign", *campaign_args(tmp_path, plan, "killed")]
    kills = (("step 6/30", False), ("step 15/30", True), ("step 24/30", False), ("step 3/9", True))
    for marker, whole_group in kills:
        assert kill_on_line(command, marker, whole_group), f"the campaign never printed {marker!r}"
    final = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr
    assert "resume from pretrain step" in (tmp_path / "killed-log.out").read_text() + final.stdout
    for stage in ("a", "b"):
        for name in ("last", "pretrain"):
            straight = load_file(tmp_path / "straight" / stage / "member_0" / f"{name}.safetensors")
            killed = load_file(tmp_path / "killed" / stage / "member_0" / f"{name}.safetensors")
            assert straight.keys() == killed.keys()
            assert [k for k in straight if not torch_equal(straight[k], killed[k])] == [], (stage, name)


def kill_on_line(command: list[str], marker: str, whole_group: bool, timeout_s: float = 120.0) -> bool:
    """Run the campaign, SIGKILL it (or its process group) as soon as a line containing `marker` appears, and wait
    until every process holding its output has exited (an orphaned trainer saves first). True if it was killed."""
    log = Path(command[command.index("--log") + 1]).with_suffix(".out")
    proc = subprocess.Popen(command, cwd=ROOT, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout] + [lines.put(None)])
    reader.start()
    killed, deadline = False, time.monotonic() + timeout_s
    with log.open("a") as out:
        while (line := lines.get(timeout=max(0.1, deadline - time.monotonic()))) is not None:
            out.write(line)
            if marker in line and not killed:
                (os.killpg if whole_group else os.kill)(proc.pid, signal.SIGKILL)
                killed = True
    reader.join(timeout=timeout_s)
    proc.wait(timeout=timeout_s)
    return killed


def torch_equal(a, b) -> bool:
    return a.shape == b.shape and bool((a == b).all())


def test_an_adversarial_stage_starts_every_member_from_the_shipped_srresnet_and_ships_when_it_ends(tmp_path):
    plan = write_plan(tmp_path, steps=(6,))
    raw = yaml.safe_load(plan.read_text())
    raw["stages"].append({"name": "g", "config": raw["stages"][0]["config"], "ship": str(tmp_path / "plan-ship" / "g"),
                          "gan_from": "a", "set": ["train.members=2", "train.gan_iterations=2",
                                                   "train.schedule=lockstep"]})
    plan.write_text(yaml.safe_dump(raw))
    assert campaign_main(campaign_args(tmp_path, plan)) == 0
    shipped_pixel = load_file(tmp_path / "plan-ship" / "a" / SHIPPED_FILE)
    for k in range(2):
        member = tmp_path / "plan-ship" / "g" / f"member_{k}"
        start = load_file(member / "pretrain.safetensors")
        assert all(torch_equal(start[key], shipped_pixel[key]) for key in shipped_pixel)  # the one SRResNet
        gan = load_file(member / "gan.safetensors")
        assert any(not torch_equal(gan[key], shipped_pixel[key]) for key in shipped_pixel)  # trained on from it
    g0, g1 = (load_file(tmp_path / "plan-ship" / "g" / f"member_{k}" / "gan.safetensors") for k in range(2))
    assert any(not torch_equal(g0[key], g1[key]) for key in g0)  # own seeds and discriminators: members differ
    record = json.loads((tmp_path / "plan-ship" / "g" / "campaign.json").read_text())
    assert record["stage"] == "g" and sorted(record["members"]) == ["member_0", "member_1"]
    ships = [r for r in read_log(tmp_path / "state-log.jsonl") if r["event"] == "ship" and r["stage"] == "g"]
    assert len(ships) == 1
    assert campaign_main(campaign_args(tmp_path, plan)) == 0  # finished: nothing trains, nothing ships again
    assert len([r for r in read_log(tmp_path / "state-log.jsonl") if r["event"] == "ship" and r["stage"] == "g"]) == 1
    plan_obj = load_plan(plan)  # a replaced machine: its shipped members are committed, it does not train again
    assert next_step(plan_obj, plan_obj.stages[1], tmp_path / "lost-state", tmp_path).kind == "done"
    (tmp_path / "plan-ship" / "g" / "campaign.json").unlink()  # stopped before it shipped: it starts again
    assert next_step(plan_obj, plan_obj.stages[1], tmp_path / "lost-state", tmp_path).kind == "gan"


def test_a_stage_cannot_start_from_a_stage_that_has_not_shipped(tmp_path):
    plan = write_plan(tmp_path, steps=(6, 6))
    plan_obj = load_plan(plan)
    with pytest.raises(ConfigError, match="stage a has not shipped a generator yet"):
        next_step(plan_obj, plan_obj.stages[1], tmp_path / "state", tmp_path)


def test_the_committed_campaign_generator_loads_and_beats_bicubic():
    """weights/campaign/x2-pixel, as the campaign last shipped it, through the same loader inference uses."""
    import numpy as np
    import torch
    from PIL import Image

    from mgsrgan.evaluate.metrics import psnr
    from mgsrgan.infer.upscaler import Upscaler, ensemble_from_source
    from mgsrgan.io.degradation import bicubic_downscale, bicubic_upscale

    folder = ROOT / "weights" / "campaign" / "x2-pixel"
    model = ensemble_from_source(run=folder, checkpoint="pretrain")
    assert model.scale == 2 and len(model.members) == 1
    hr = np.asarray(Image.open(ROOT / "examples" / "chelsea.png").convert("RGB"))[:96, :96].copy()
    lr = bicubic_downscale(hr, 2)
    sr = Upscaler(model, device="cpu", precision="fp32").upscale_tensor(
        torch.from_numpy(lr.copy()).permute(2, 0, 1)[None].float() / 255)
    sr = (sr[0].permute(1, 2, 0).numpy() * 255 + 0.5).clip(0, 255).astype(np.uint8)
    assert psnr(sr, hr, crop_border=2) > psnr(bicubic_upscale(lr, 2), hr, crop_border=2) + 0.3
