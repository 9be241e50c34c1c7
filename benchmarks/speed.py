"""Speed benchmark: training steps/s, inference output MP/s, peak memory, conv GFLOP/s vs a matmul peak.

    python benchmarks/speed.py                 # every case, each in its own process (own peak RSS)
    python benchmarks/speed.py --case infer_x4 # one case, prints one JSON line

Writes benchmarks/results/speed.json (machine, torch, git commit, every case). Targets come from BasicSR 1.4.2
measured on this machine (fp32, 2 threads, 4096^2 fp32 matmul at 325 GFLOP/s): SRResNet x4 upscales 256^2 ->
1024^2 at 0.487 output MP/s; one SRGAN x4 training step (batch 16, HR 128, VGG19 conv5_4 + D) takes 6.8 s.
Ours is compared after scaling those by this run's matmul peak.
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mgsrgan.config import load_config  # noqa: E402
from mgsrgan.models.discriminator import Discriminator  # noqa: E402
from mgsrgan.models.fuse import fold_batchnorm  # noqa: E402
from mgsrgan.models.generator import Generator  # noqa: E402
from mgsrgan.train.losses import ContentLoss, adversarial_g_loss, discriminator_loss  # noqa: E402
from mgsrgan.models.vgg import VGGFeatures  # noqa: E402

BASICSR_MATMUL_GFLOPS = 325.0  # 4096^2 fp32 matmul on this machine while BasicSR was measured (issue 4)
BASICSR_INFER_MPS = 0.487  # BasicSR 1.4.2 MSRResNet x4, 256^2 -> 1024^2, output MP/s (issue 4)
BASICSR_TRAIN_STEP_S = 6.8  # BasicSR 1.4.2 SRGAN x4 step, batch 16, HR 128, VGG19 conv5_4 + D (issue 4)
INFER_TARGET_FACTOR = 1.5  # inference at least 1.5x BasicSR's rate (issue 4)


def best_time(fn, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def conv_flops(model: torch.nn.Module, x: torch.Tensor) -> float:
    """FLOPs (2 per multiply-add) of every Conv2d/Linear in one forward pass of x."""
    total = [0.0]

    def hook(module, inputs, output):
        if isinstance(module, torch.nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
            total[0] += 2.0 * k * output.numel()
        elif isinstance(module, torch.nn.Linear):
            total[0] += 2.0 * module.in_features * output.numel()

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return total[0]


def case_matmul() -> dict:
    """4096^2 fp32 matmul through torch (MKL) and numpy (OpenBLAS); the faster one is the peak (stricter)."""

    n = 4096
    a, b = torch.rand(n, n), torch.rand(n, n)
    torch_s = best_time(lambda: a @ b, repeats=5)
    a_np, b_np = a.numpy(), b.numpy()
    numpy_s = best_time(lambda: a_np @ b_np, repeats=5)
    flops = 2 * n ** 3
    return {"torch_gflops": flops / torch_s / 1e9, "numpy_gflops": flops / numpy_s / 1e9,
            "gflops": flops / min(torch_s, numpy_s) / 1e9}


def _generator(config: str) -> Generator:
    m = load_config(ROOT / config).model
    torch.manual_seed(0)
    return Generator(scale=m.scale, num_blocks=m.num_blocks, channels=m.channels).eval()


def case_infer(config: str, size: int, variant: str) -> dict:
    """plain: the training-time module, NCHW. upscaler: what inference.py runs (BN folded, channels_last)."""
    from mgsrgan.infer.upscaler import Upscaler

    generator = _generator(config)
    x = torch.rand(1, 3, size, size)
    flops = conv_flops(generator, x)
    if variant == "upscaler":
        upscaler = Upscaler(fold_batchnorm(generator), device="cpu")

        def run():
            upscaler.upscale_tensor(x)
    else:
        def run():
            with torch.inference_mode():
                generator(x)
    seconds = best_time(run, repeats=5)
    out_mp = (size * generator.scale) ** 2 / 1e6
    return {"config": config, "variant": variant, "input": f"{size}x{size}", "seconds": seconds,
            "output_mp_per_s": out_mp / seconds, "conv_gflops": flops / seconds / 1e9}


def _srgan_parts(config: str, hr_patch: int, batch: int, vgg_layer: str):
    cfg = load_config(ROOT / config)
    m = cfg.model
    torch.manual_seed(0)
    generator = Generator(scale=m.scale, num_blocks=m.num_blocks, channels=m.channels)
    discriminator = Discriminator(channels=m.d_channels, dense=m.d_dense, pool=m.d_pool)
    content = ContentLoss(VGGFeatures(layer=vgg_layer, weights="random"), rescale=cfg.loss.content_rescale)
    optim_g = torch.optim.Adam(generator.parameters(), 1e-4)
    optim_d = torch.optim.Adam(discriminator.parameters(), 1e-4)
    lr_img = torch.rand(batch, 3, hr_patch // m.scale, hr_patch // m.scale)
    hr_img = torch.rand(batch, 3, hr_patch, hr_patch)
    return cfg, generator, discriminator, content, optim_g, optim_d, lr_img, hr_img


def case_train_srgan(config: str, hr_patch: int, batch: int, vgg_layer: str) -> dict:
    """One D update + one G update (content + adversarial), as BasicSR counts one SRGAN step."""
    cfg, generator, discriminator, content, optim_g, optim_d, lr_img, hr_img = \
        _srgan_parts(config, hr_patch, batch, vgg_layer)

    def d_step():
        with torch.no_grad():
            sr_img = generator(lr_img)
        loss = discriminator_loss(discriminator(hr_img), discriminator(sr_img))
        optim_d.zero_grad()
        loss.backward()
        optim_d.step()

    def g_step():
        discriminator.requires_grad_(False)
        sr_img = generator(lr_img)
        loss = content(sr_img, hr=hr_img) + cfg.loss.adv_weight * adversarial_g_loss(discriminator(sr_img))
        optim_g.zero_grad()
        loss.backward()
        optim_g.step()
        discriminator.requires_grad_(True)

    def pretrain_step():
        loss = torch.nn.functional.mse_loss(generator(lr_img), hr_img)
        optim_g.zero_grad()
        loss.backward()
        optim_g.step()

    d_seconds, g_seconds = best_time(d_step, 2), best_time(g_step, 2)
    p_seconds = best_time(pretrain_step, 2)
    return {"config": config, "hr_patch": hr_patch, "batch": batch, "vgg_layer": vgg_layer,
            "d_step_s": d_seconds, "g_step_s": g_seconds, "d_plus_g_s": d_seconds + g_seconds,
            "pretrain_step_s": p_seconds, "pretrain_samples_per_s": batch / p_seconds,
            "gan_samples_per_s": 2 * batch / (d_seconds + g_seconds)}


def case_members(config: str, schedule: str, members: int, steps: int) -> dict:
    """K members through `steps` pre-training steps and `steps` adversarial iterations (n:m cycles) with the real
    training loop."""
    import tempfile

    from mgsrgan.config import config_from_dict, config_to_dict
    from mgsrgan.train.data import TrainPatches
    from mgsrgan.train.runlog import RunLog
    from mgsrgan.train.loop import Context, train

    raw = config_to_dict(load_config(ROOT / config))
    shared = ROOT.parent / "shared" / "data" / "T91"
    raw["data"].update(train_dirs=[str(shared if shared.is_dir() else ROOT / "data" / "smoke")], val_dir="",
                       num_workers=1)
    raw["loss"]["vgg_weights"] = "random" if raw["loss"]["vgg_weights"] != "stlpips" else "stlpips"
    raw["train"].update(members=members, schedule=schedule, pretrain_steps=steps, gan_iterations=steps,
                        checkpoint_every=10 ** 9, log_every=10 ** 9, val_every=0)
    cfg = config_from_dict(raw)
    d = cfg.data
    dataset = TrainPatches(hr_dirs=d.train_dirs, scale=cfg.model.scale, hr_patch=d.hr_patch, augment=True, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        ctx = Context(cfg=cfg, run_dir=Path(tmp), device=torch.device("cpu"), dataset=dataset, validation=[],
                      log=RunLog(Path(tmp), tensorboard=False, quiet=True), progress=False)
        start = time.perf_counter()
        train(ctx, resume=False)
        seconds = time.perf_counter() - start
    member_steps = members * 2 * steps
    return {"config": config, "schedule": schedule, "members": members, "steps_per_phase": steps,
            "seconds": seconds, "member_steps_per_s": member_steps / seconds,
            "samples_per_s": member_steps * cfg.data.batch_size / seconds}


CASES = {
    "matmul": lambda: case_matmul(),
    "infer_x4_plain": lambda: case_infer("config.yaml", 256, "plain"),
    "infer_x4_upscaler": lambda: case_infer("config.yaml", 256, "upscaler"),
    "infer_scaled_plain": lambda: case_infer("config_scaled.yaml", 256, "plain"),
    "infer_scaled_upscaler": lambda: case_infer("config_scaled.yaml", 256, "upscaler"),
    "train_srgan_x4": lambda: case_train_srgan("config.yaml", 128, 16, "5_4"),
    "train_scaled": lambda: case_train_srgan("config_scaled.yaml", 128, 16, "5_3"),
    "members_sequential": lambda: case_members("config_scaled.yaml", "sequential", 3, 3),
    "members_lockstep": lambda: case_members("config_scaled.yaml", "lockstep", 3, 3),
}


def profile_inference(config: str = "config.yaml", size: int = 256) -> str:
    """Where the x4 inference time goes: torch.profiler's table of operators, self CPU time."""
    from mgsrgan.infer.upscaler import Upscaler

    upscaler = Upscaler(fold_batchnorm(_generator(config)), device="cpu")
    x = torch.rand(1, 3, size, size)
    upscaler.upscale_tensor(x)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=True) as prof:
        upscaler.upscale_tensor(x)
    return prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=12)


def run_case(name: str) -> dict:
    torch.manual_seed(0)
    result = CASES[name]()
    result["case"] = name
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def git_commit() -> str:
    done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


def summarise(results: dict[str, dict]) -> dict:
    peak = results["matmul"]["gflops"]
    ratio = peak / BASICSR_MATMUL_GFLOPS
    summary = {"matmul_gflops": peak, "machine_vs_basicsr_run": ratio}
    for name, r in results.items():
        if name.startswith("infer"):
            r["fraction_of_matmul_peak"] = r["conv_gflops"] / peak
    ours = results["infer_x4_upscaler"]["output_mp_per_s"]
    target = INFER_TARGET_FACTOR * BASICSR_INFER_MPS * ratio
    summary["infer_x4"] = {"ours_mp_per_s": ours, "target_mp_per_s": target, "met": ours >= target,
                           "vs_basicsr_scaled": ours / (BASICSR_INFER_MPS * ratio)}
    step = results["train_srgan_x4"]["d_plus_g_s"]
    allowed = BASICSR_TRAIN_STEP_S / ratio
    summary["train_srgan_x4"] = {"ours_step_s": step, "target_step_s": allowed, "met": step <= allowed}
    seq, lock = results["members_sequential"]["seconds"], results["members_lockstep"]["seconds"]
    summary["members_k3"] = {"sequential_s": seq, "lockstep_s": lock, "lockstep_saving": 1 - lock / seq}
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", choices=sorted(CASES), help="run one case in this process")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "speed.json"))
    parser.add_argument("--profile", action="store_true", help="print an operator profile of x4 inference")
    args = parser.parse_args()
    if args.profile:
        print(profile_inference())
        return 0
    if args.case:
        print(json.dumps(run_case(args.case)))
        return 0
    results = {}
    for name in CASES:
        done = subprocess.run([sys.executable, __file__, "--case", name], capture_output=True, text=True, cwd=ROOT)
        if done.returncode != 0:
            print(done.stderr, file=sys.stderr)
            return 1
        results[name] = json.loads(done.stdout.strip().splitlines()[-1])
        print(name, json.dumps(results[name]), flush=True)
    report = {"machine": {"platform": platform.platform(), "processor": platform.processor(),
                          "threads": torch.get_num_threads(), "torch": torch.__version__},
              "git_commit": git_commit(), "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "cases": results, "summary": summarise(results)}
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps(report["summary"], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
