"""Speed: the trainer's own steps and inference, fp32 and bf16, side by side with BasicSR 1.4.2 in one run.

    python -m tools.speed --basicsr     # our cases (each in its own process), then BasicSR right after ->
                                        #   tools/results/speed.json + speed.md (times and ratios)
    python -m tools.speed               # our cases only (no ratios)
    python -m tools.speed --only srgan_x4_fp32,srgan_x4_bf16 --reps 1 --out /tmp/s.json   # some cases
    python -m tools.speed --case srgan_x4_bf16   # one case in this process, prints one JSON line
    python -m tools.speed --profile     # operator table of x4 inference (printed)

Where one x4 SRGAN iteration's time goes: `python -m tools.profile_train` (it uses this module's timing helpers).

The training cases time `mgsrgan.train.steps.pixel_step` and `gan_step` on a `Member` from `build_member`, as the
training loop calls them; one SRGAN iteration is one discriminator and one generator update (one cycle of the 1:1
plan, `schedule.update_kind`), BasicSR's `optimize_parameters`. Batches are `torch.rand` tensors (no loader), as in
BasicSR's script. `--basicsr` runs `../shared/peers/basicsr-bench/run.sh` (its own venv, fp32) in the same
invocation with the same threads, warm-up and repeat counts, so every ratio comes from one machine state; each
side records how busy the machine was during each case. Statistic: the median of the timed runs.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from mgsrgan.config import Config, load_config
from mgsrgan.device import cpu_has_bf16
from mgsrgan.models.fuse import fold_batchnorm
from mgsrgan.models.generator import Generator
from tools.speed_report import compare, conv_vs_matmul, markdown

ROOT = Path(__file__).resolve().parents[1]

RESULTS = ROOT / "tools" / "results"
BASICSR_SCRIPT = ROOT.parent / "shared" / "peers" / "basicsr-bench" / "run.sh"
BASICSR_CASES = ("matmul_start", "infer_x4_lr256", "pixel_x4_hr128", "srgan_x4_hr128", "matmul_end")
MATMUL_SIZE = 4096


# ---------------------------------------------------------------------------------------------- timing helpers
def timings(fn, reps: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def summary(times: list[float]) -> dict:
    return {"seconds": statistics.median(times), "min_s": min(times), "samples_s": [round(t, 5) for t in times]}


def cpu_snapshot() -> tuple[float, float, float]:
    """(wall s, machine busy CPU s, CPU s of this process's finished children)."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (values + [0] * 8)[:8]
    busy = (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = resource.getrusage(resource.RUSAGE_SELF)
    return time.perf_counter(), busy, children.ru_utime + children.ru_stime + own.ru_utime + own.ru_stime


def foreign_load(before: tuple, after: tuple) -> float:
    """Share of the machine's cores (0..1) busy with other processes between two snapshots."""
    wall = after[0] - before[0]
    foreign = (after[1] - before[1]) - (after[2] - before[2])
    return round(max(0.0, foreign) / max(wall * (os.cpu_count() or 1), 1e-9), 4)


# ---------------------------------------------------------------------------------------------- cases
def case_matmul(reps: int, warmup: int) -> dict:
    """4096^2 torch.mm in fp32 and bf16; the peak is the fastest timed run (stricter than the median)."""
    out = {}
    flops = 2.0 * MATMUL_SIZE ** 3
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        torch.manual_seed(0)
        a, b = torch.randn(MATMUL_SIZE, MATMUL_SIZE, dtype=dtype), torch.randn(MATMUL_SIZE, MATMUL_SIZE, dtype=dtype)
        result = torch.empty(MATMUL_SIZE, MATMUL_SIZE, dtype=dtype)
        times = timings(lambda: torch.mm(a, b, out=result), max(reps, 5), max(warmup, 2))
        out[name] = {**summary(times), "gflops_peak": flops / min(times) / 1e9,
                     "gflops_median": flops / statistics.median(times) / 1e9}
    out["seconds"], out["min_s"] = out["fp32"]["seconds"], out["fp32"]["min_s"]
    return out


def _generator(config: str) -> Generator:
    m = load_config(ROOT / config).model
    torch.manual_seed(0)
    return Generator(scale=m.scale, num_blocks=m.num_blocks, channels=m.channels, global_skip=m.global_skip).eval()


def network_flops(generator: Generator, lr_img: torch.Tensor) -> float:
    """Conv FLOPs (2 per multiply-add) of the network as defined (9x9 tail on the HR grid), whatever form runs."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        generator(lr_img, plain_tail=True)
    return float(counter.get_total_flops())


def case_infer(config: str, size: int, variant: str, precision: str, reps: int, warmup: int) -> dict:
    """plain: the training module as it is (BN unfused, NCHW, fp32). upscaler: what inference.py runs (BN folded,
    sub-pixel tail, channels_last, `precision`)."""
    from mgsrgan.infer.upscaler import Upscaler

    generator = _generator(config)
    lr_img = torch.rand(1, 3, size, size)
    flops = network_flops(generator, lr_img)
    dtype = torch.float32
    if variant == "upscaler":
        upscaler = Upscaler(fold_batchnorm(generator), device="cpu", precision=precision)
        dtype = upscaler.dtype

        def run():
            upscaler.upscale_tensor(lr_img)
    else:
        def run():
            with torch.inference_mode():
                generator(lr_img)
    result = summary(timings(run, reps, warmup))
    out_mp = (size * generator.scale) ** 2 / 1e6
    return {"config": config, "variant": variant, "precision": precision, "dtype": str(dtype).split(".")[-1],
            "input": f"{size}x{size}", "output_mp_per_s": out_mp / result["seconds"], "network_gflop": flops / 1e9,
            "conv_gflops": flops / result["seconds"] / 1e9, **result}


def train_config(config: str, precision: str, hr_patch: int | None, batch: int, extra: tuple[str, ...] = ()) -> Config:
    """`config` with runtime.amp = precision (fp32 -> none), the given patch and batch and `extra` overrides;
    ImageNet VGG19 replaced by random weights (the same layers and cost, no download)."""
    overrides = [*extra, f"runtime.amp={'none' if precision == 'fp32' else precision}", f"data.batch_size={batch}"]
    if hr_patch:
        overrides.append(f"data.hr_patch={hr_patch}")
    cfg = load_config(ROOT / config, overrides)
    if cfg.loss.vgg_weights == "imagenet":
        cfg = load_config(ROOT / config, overrides + ["loss.vgg_weights=random"])
    return cfg


def train_setup(config: str, precision: str, hr_patch: int | None = None, batch: int = 16,
                overrides: tuple[str, ...] = ()):
    """(cfg, member, content loss or None, lr_img, hr_img) as the training loop builds them, on CPU."""
    from mgsrgan.train.losses import ContentLoss
    from mgsrgan.train.member import build_member, memory_format

    cfg = train_config(config, precision, hr_patch, batch, overrides)
    device = torch.device("cpu")
    member = build_member(cfg, 0, device)
    content = ContentLoss.from_config(cfg.loss).to(device) if cfg.loss.content_weight > 0 else None  # as the loop
    generator = torch.Generator().manual_seed(1)
    p, s = cfg.data.hr_patch, cfg.model.scale
    layout = memory_format(cfg)  # as the loop hands batches over
    lr_img = torch.rand(batch, 3, p // s, p // s, generator=generator).contiguous(memory_format=layout)  # [0, 1]
    hr_img = torch.rand(batch, 3, p, p, generator=generator).contiguous(memory_format=layout)  # (B, 3, p, p)
    return cfg, member, content, lr_img, hr_img


def case_pixel(config: str, precision: str, hr_patch: int | None, reps: int, warmup: int,
               overrides: tuple[str, ...] = ()) -> dict:
    """steps.pixel_step: one generator update on the pixel loss. Its rate in GFLOP/s counts the network's conv
    FLOPs as defined (`network_flops`) three times: the forward, and the backward's input and weight gradients."""
    from mgsrgan.train.steps import pixel_step

    cfg, member, _content, lr_img, hr_img = train_setup(config, precision, hr_patch, overrides=overrides)
    device = torch.device("cpu")
    step = iter(range(10 ** 9))
    result = summary(timings(lambda: pixel_step(member, lr_img, hr_img, next(step), cfg, device), reps, warmup))
    m = cfg.model
    torch.manual_seed(0)
    step_flops = 3 * network_flops(Generator(scale=m.scale, num_blocks=m.num_blocks, channels=m.channels,
                                             global_skip=m.global_skip), lr_img)
    batch = lr_img.shape[0]
    return {"config": config, "overrides": list(overrides), "precision": precision, "hr_patch": cfg.data.hr_patch,
            "batch": batch, "pixel": cfg.loss.pixel, "samples_per_s": batch / result["seconds"],
            "step_gflop": step_flops / 1e9, "conv_gflops": step_flops / result["seconds"] / 1e9, **result}


def case_pixel_stage(stage: str, precision: str, reps: int, warmup: int) -> dict:
    """case_pixel on the network, data and runtime settings of a campaign stage (configs/campaign.yaml): the step as
    the campaign runs it (compiled where the stage compiles; the warm-up run compiles)."""
    from mgsrgan.train.campaign import load_plan, stage_of

    found = stage_of(load_plan(ROOT / "configs" / "campaign.yaml"), stage)
    overrides = tuple(a for a in found.set if a.startswith(("model.", "data.", "runtime.")))
    return {**case_pixel(found.config, precision, None, reps, warmup, overrides=overrides), "stage": stage}


def case_gan(config: str, precision: str, hr_patch: int | None, reps: int, warmup: int,
             overrides: tuple[str, ...] = ()) -> dict:
    """steps.gan_step through whole cycles of the n:m plan; one iteration = one D + one G update (the mean update
    of each kind within a cycle), BasicSR's SRGAN iteration."""
    from mgsrgan.train.schedule import DISCRIMINATOR, update_kind
    from mgsrgan.train.steps import gan_step

    cfg, member, content, lr_img, hr_img = train_setup(config, precision, hr_patch, overrides=overrides)
    device = torch.device("cpu")
    g_updates, d_updates = cfg.train.g_updates, cfg.train.d_updates
    cycle = g_updates + d_updates
    done = [0]
    d_times, g_times = [], []

    def one_cycle():
        spent = {"d": 0.0, "g": 0.0}
        for _ in range(cycle):
            kind = "d" if update_kind(done[0], g_updates, d_updates) == DISCRIMINATOR else "g"
            start = time.perf_counter()
            gan_step(member, lr_img, hr_img, done[0], cfg, device, content, None)
            spent[kind] += time.perf_counter() - start
            done[0] += 1
        d_times.append(spent["d"] / d_updates)
        g_times.append(spent["g"] / g_updates)

    timings(one_cycle, reps, warmup)
    d_times, g_times = d_times[warmup:], g_times[warmup:]
    iterations = [d + g for d, g in zip(d_times, g_times)]
    batch = lr_img.shape[0]
    result = summary(iterations)
    return {"config": config, "precision": precision, "hr_patch": cfg.data.hr_patch, "batch": batch,
            "plan": f"{g_updates}:{d_updates}", "content": cfg.loss.content_layer if content is not None else None,
            "adversarial": cfg.loss.adversarial, "d_update_s": statistics.median(d_times),
            "g_update_s": statistics.median(g_times), "iterations_per_s": 1.0 / result["seconds"], **result}


def case_tail(config: str, hr_patch: int, batch: int, reps: int, warmup: int) -> dict:
    """Forward + backward of the 9x9 tail alone (from the last stage's conv output: shuffle, PReLU, 9x9 conv) and of
    the whole generator, plain vs sub-pixel form, fp32 and bf16, interleaved in one process."""
    generator = _generator(config).train()
    last = generator.upsample[-1]
    torch.manual_seed(0)
    grid = hr_patch // 2  # the last stage's conv runs on the grid before its shuffle
    z = torch.randn(batch, last.conv.out_channels, grid, grid, requires_grad=True)
    lr_img = torch.rand(batch, 3, hr_patch // generator.scale, hr_patch // generator.scale)
    grad = torch.randn(batch, 3, hr_patch, hr_patch)
    forms = {
        "tail_plain": lambda: generator.tail(last.act(last.shuffle(z))),
        "tail_subpixel": lambda: generator.tail_before_shuffle(z),
        "generator_plain": lambda: generator(lr_img, plain_tail=True),
        "generator_subpixel": lambda: generator(lr_img),
    }
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    times = {(p, f): [] for p in dtypes for f in forms}
    for rep in range(warmup + reps):
        for precision, dtype in dtypes.items():
            for form, fn in forms.items():
                generator.zero_grad(set_to_none=True)
                z.grad = None
                start = time.perf_counter()
                with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
                    out = fn()
                (out.float() * grad).sum().backward()
                if rep >= warmup:
                    times[precision, form].append(time.perf_counter() - start)
    out = {"config": config, "hr_patch": hr_patch, "batch": batch}
    for precision in dtypes:
        row = {form: statistics.median(times[precision, form]) for form in forms}
        row["tail_speedup"] = row["tail_plain"] / row["tail_subpixel"]
        row["generator_speedup"] = row["generator_plain"] / row["generator_subpixel"]
        out[precision] = row
    out["seconds"] = out["fp32"]["generator_subpixel"]
    return out


def case_members(config: str, schedule: str, members: int, steps: int) -> dict:
    """K members through `steps` pre-training steps and `steps` adversarial iterations with the real training loop."""
    from mgsrgan.config import config_from_dict, config_to_dict
    from mgsrgan.train.data import TrainPatches
    from mgsrgan.train.loop import Context, train
    from mgsrgan.train.runlog import RunLog

    raw = config_to_dict(load_config(ROOT / config))
    shared = ROOT.parent / "shared" / "data" / "T91"
    raw["data"].update(train_dirs=[str(shared if shared.is_dir() else ROOT / "data" / "smoke")], val_dir="",
                       val_holdout=0, num_workers=1)
    raw["loss"]["vgg_weights"] = "random" if raw["loss"]["vgg_weights"] != "stlpips" else "stlpips"
    raw["train"].update({"members": members, "schedule": schedule, "pretrain_steps": steps, "gan_iterations": steps,
                         "checkpoint_every": 10 ** 9, "log_every": 10 ** 9, "val_every": 0})
    cfg = config_from_dict(raw)
    d = cfg.data
    dataset = TrainPatches(hr_dirs=d.train_dirs, scale=cfg.model.scale, hr_patch=d.hr_patch, augment=True, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        ctx = Context(cfg=cfg, run_dir=Path(tmp), device=torch.device("cpu"), dataset=dataset, validation=[],
                      log=RunLog(Path(tmp), tensorboard=False, quiet=True), progress=False)
        start = time.perf_counter()
        train(ctx, resume=False)
        seconds = time.perf_counter() - start
    return {"config": config, "schedule": schedule, "members": members, "steps_per_phase": steps,
            "seconds": seconds}


def _cases() -> dict:
    """name -> fn(reps, warmup). Training and inference at both precisions; the members cases run the whole loop."""
    cases = {"matmul": case_matmul}
    for precision in ("fp32", "auto"):
        cases[f"infer_x4_{precision}"] = \
            lambda r, w, p=precision: case_infer("config.yaml", 256, "upscaler", p, r, w)
        cases[f"infer_scaled_{precision}"] = \
            lambda r, w, p=precision: case_infer("config_scaled.yaml", 256, "upscaler", p, r, w)
    cases["infer_x4_plain"] = lambda r, w: case_infer("config.yaml", 256, "plain", "fp32", r, w)
    cases["infer_scaled_plain"] = lambda r, w: case_infer("config_scaled.yaml", 256, "plain", "fp32", r, w)
    for precision in ("fp32", "bf16"):
        cases[f"pixel_x4_{precision}"] = lambda r, w, p=precision: case_pixel("config.yaml", p, 128, r, w)
        cases[f"srgan_x4_{precision}"] = lambda r, w, p=precision: case_gan("config.yaml", p, 128, r, w)
        # the x2 preset at its own patch size (data.hr_patch, 96)
        cases[f"pixel_scaled_{precision}"] = lambda r, w, p=precision: case_pixel("config_scaled.yaml", p, None, r, w)
        cases[f"gan_scaled_{precision}"] = lambda r, w, p=precision: case_gan("config_scaled.yaml", p, None, r, w)
        # the network the campaign's x2 stage trains (configs/campaign.yaml), at its patch size
        cases[f"pixel_campaign_x2_{precision}"] = lambda r, w, p=precision: case_pixel_stage("x2-pixel", p, r, w)
    cases["tail_x4"] = lambda r, w: case_tail("config.yaml", 128, 16, r, w)
    cases["members_sequential"] = lambda r, w: case_members("config_scaled.yaml", "sequential", 3, 3)
    cases["members_lockstep"] = lambda r, w: case_members("config_scaled.yaml", "lockstep", 3, 3)
    return cases


CASES = _cases()
# The default run: every case but the whole-loop members cases (minutes each; `--only members_sequential,...`).
DEFAULT_CASES = [name for name in CASES if not name.startswith("members_")]


def run_case(name: str, reps: int, warmup: int) -> dict:
    torch.manual_seed(0)
    result = CASES[name](reps, warmup)
    result["case"] = name
    result["threads"] = torch.get_num_threads()
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


# ---------------------------------------------------------------------------------------------- machine, BasicSR
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine(threads: int) -> dict:
    return {"cpu_model": cpu_model(), "cores": os.cpu_count(), "native_bf16": cpu_has_bf16(),
            "platform": platform.platform(), "threads": threads, "torch": torch.__version__,
            "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def git_commit() -> str:
    done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


def run_basicsr(threads: int, reps: int, warmup: int) -> dict:
    """BasicSR's run.sh on the cases we compare with, same counts and threads; its JSON (RuntimeError on failure)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "basicsr_cpu.json"
        command = ["bash", str(BASICSR_SCRIPT), "--only", ",".join(BASICSR_CASES), "--threads", str(threads),
                   "--reps", str(reps), "--warmup", str(warmup), "--out", str(out)]
        print("running", " ".join(command), flush=True)
        done = subprocess.run(command, cwd=ROOT)
        if done.returncode != 0 or not out.is_file():
            raise RuntimeError(f"{BASICSR_SCRIPT} failed (exit {done.returncode})")
        return json.loads(out.read_text())


# ---------------------------------------------------------------------------------------------- profiles
def profile_inference(config: str = "config.yaml", size: int = 256) -> str:
    """Where the x4 inference time goes: torch.profiler's table of operators, self CPU time."""
    from mgsrgan.infer.upscaler import Upscaler

    upscaler = Upscaler(fold_batchnorm(_generator(config)), device="cpu", precision="fp32")
    x = torch.rand(1, 3, size, size)
    upscaler.upscale_tensor(x)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=True) as prof:
        upscaler.upscale_tensor(x)
    return prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=12)


# ---------------------------------------------------------------------------------------------- main
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", choices=sorted(CASES), help="run one case in this process, print its JSON")
    parser.add_argument("--only", default="", help="comma list of cases to run (default: all but members_*)")
    parser.add_argument("--basicsr", action="store_true",
                        help="after our cases, run ../shared/peers/basicsr-bench/run.sh and write the ratios")
    parser.add_argument("--reps", type=int, default=3, help="timed runs per case (median; BasicSR's run.sh: 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs first (BasicSR's run.sh: 1)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads, ours and BasicSR's (run.sh: 2)")
    parser.add_argument("--out", default=str(RESULTS / "speed.json"), help="JSON report; the .md beside it")
    parser.add_argument("--profile", action="store_true", help="print an operator profile of x4 inference")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.profile:
        print(profile_inference())
        return 0
    if args.case:
        print(json.dumps(run_case(args.case, args.reps, args.warmup)))
        return 0
    names = [n for n in args.only.split(",") if n] or DEFAULT_CASES
    unknown = [n for n in names if n not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    results = {}
    for name in names:
        before = cpu_snapshot()
        done = subprocess.run([sys.executable, "-m", "tools.speed", "--case", name, "--reps", str(args.reps),
                               "--warmup", str(args.warmup), "--threads", str(args.threads)], capture_output=True,
                              text=True, cwd=ROOT)
        if done.returncode != 0:
            print(done.stderr, file=sys.stderr)
            return 1
        results[name] = json.loads(done.stdout.strip().splitlines()[-1])
        results[name]["foreign_cpu_frac"] = foreign_load(before, cpu_snapshot())
        print(name, json.dumps(results[name]), flush=True)
    basicsr = run_basicsr(args.threads, args.reps, args.warmup) if args.basicsr else None
    report = {"command": "python -m tools.speed " + " ".join(sys.argv[1:]), "time": started,
              "git_commit": git_commit(), "machine": machine(args.threads),
              "settings": {"reps": args.reps, "warmup": args.warmup, "threads": args.threads, "statistic": "median"},
              "cases": results, "comparison": compare(results, basicsr), "conv_vs_matmul": conv_vs_matmul(results),
              "basicsr": basicsr}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
