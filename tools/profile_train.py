"""Where one x4 SRGAN training iteration's time goes, fp32 and bf16:

    python -m tools.profile_train [--reps 3] [--warmup 1] [--threads 2] [--out tools/results/profile_train_x4.txt]

The iteration is what training runs (`steps.gan_step` for one D and one G update on a `build_member` Member,
config.yaml at batch 16, HR 128, VGG19 conv5_4 content loss with random weights); each part is then timed alone,
and one iteration runs under torch.profiler (operators by self CPU time, grouped and by input shape). The file says
when other processes used the CPU meanwhile.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch

from tools.speed import RESULTS, cpu_model, cpu_snapshot, foreign_load, git_commit, timings, train_setup
from tools.speed_report import BUSY_FRACTION

OP_GROUPS = (  # (group, substrings of lower-cased op names), first match wins; self CPU time: nothing counts twice
    ("autograd engine (the ops it calls are counted in their groups)", ("autograd::",)),
    ("conv backward", ("convolution_backward",)),
    ("conv forward", ("convolution", "conv2d")),
    ("dense (mm/addmm)", ("addmm", "aten::mm", "aten::bmm", "linear")),
    ("BatchNorm", ("batch_norm",)),
    ("activations (PReLU, LeakyReLU, ReLU, sigmoid)", ("prelu", "leaky_relu", "relu", "threshold", "sigmoid")),
    ("optimizer (Adam, foreach)", ("_foreach", "adam", "lerp", "addcdiv", "addcmul")),
    ("casts and copies", ("copy_", "_to_copy", "clone", "contiguous")),
    ("shuffle, pad, index, pool", ("pixel_shuffle", "pad", "index", "pool", "cat")),
    ("elementwise and reductions", ("add", "mul", "sub", "div", "sum", "mean", "pow", "sqrt", "fill", "zero")),
)


def op_groups(averages) -> list[tuple[str, float]]:
    """(group, self CPU seconds) from profiler key averages, largest first."""
    totals: dict[str, float] = {}
    for event in averages:
        name = event.key.lower()
        group = next((g for g, keys in OP_GROUPS if any(k in name for k in keys)), "other")
        totals[group] = totals.get(group, 0.0) + event.self_cpu_time_total / 1e6
    return sorted(totals.items(), key=lambda kv: -kv[1])


def _components(cfg, member, content, lr_img, hr_img) -> dict:
    """fn() per part of one SRGAN iteration, each a separate forward (+ backward) as the steps run it."""
    from mgsrgan.device import autocast_to
    from mgsrgan.train.steps import amp_dtype

    device = torch.device("cpu")
    dtype = amp_dtype(cfg, device)
    generator, discriminator = member.generator, member.discriminator
    sr_grad = torch.full((lr_img.shape[0], 3, hr_img.shape[2], hr_img.shape[3]), 1e-3)
    with torch.no_grad():
        hr_features = content.features(hr_img)
        sr_fixed = generator(lr_img).clamp(0, 1)

    def generator_pass(plain_tail: bool):
        def run():
            generator.zero_grad(set_to_none=True)
            with autocast_to(dtype, device):
                sr_img = generator(lr_img, plain_tail=plain_tail)
            sr_img.float().backward(sr_grad)
        return run

    def generator_forward():
        with torch.no_grad(), autocast_to(dtype, device):
            generator(lr_img)

    def vgg_hr():
        with torch.no_grad(), autocast_to(dtype, device):
            content.features(hr_img)

    def vgg_sr():
        sr_img = sr_fixed.clone().requires_grad_(True)
        with autocast_to(dtype, device):
            loss = content(sr_img, hr_features=hr_features)
        loss.float().backward()

    def d_to_image():
        sr_img = sr_fixed.clone().requires_grad_(True)
        discriminator.requires_grad_(False)
        try:
            with autocast_to(dtype, device):
                logits = discriminator(sr_img).float()
            logits.mean().backward()
        finally:
            discriminator.requires_grad_(True)

    def d_weights():
        discriminator.zero_grad(set_to_none=True)
        with autocast_to(dtype, device):
            logits = discriminator(hr_img).float()
        logits.mean().backward()

    return {
        "G update: generator forward + backward": generator_pass(False),
        "G update: same, plain 9x9 tail (before issue 12)": generator_pass(True),
        "G update: VGG19 5_4 on HR, forward (no grad)": vgg_hr,
        "G update: VGG19 5_4 on SR, forward + backward to the image": vgg_sr,
        "G update: D forward + backward to the image (D frozen)": d_to_image,
        "G update: Adam step (G)": lambda: member.optim_g.step(),
        "D update: generator forward (no grad)": generator_forward,
        "D update: D forward + backward with weight gradients, one batch (x2: real, fake)": d_weights,
        "D update: Adam step (D)": lambda: member.optim_d.step(),
    }


def profile_train(precisions=("fp32", "bf16"), reps: int = 2, warmup: int = 1, row_limit: int = 25) -> str:
    """One x4 SRGAN iteration (config.yaml, batch 16, HR 128, VGG19 5_4 random weights) per precision: the D and G
    update times, each part timed alone, and torch.profiler's operators (self CPU time) grouped and by shape."""
    from mgsrgan.train.schedule import DISCRIMINATOR, GENERATOR, update_kind
    from mgsrgan.train.steps import gan_step

    lines = ["# Where one x4 SRGAN training iteration's time goes (`python -m tools.profile_train`)",
             f"# {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}, commit {git_commit()[:10]}, CPU "
             f"{cpu_model()} ({os.cpu_count()} cores), torch {torch.__version__}, threads {torch.get_num_threads()}",
             "# config.yaml (16 x 64 SRResNet, paper D, VGG19 conv5_4 content loss with random weights), batch 16, "
             "HR 128; steps.gan_step twice (1 D + 1 G update) on a build_member Member; parts timed alone (median "
             f"of {reps} after {warmup} warm-up), then one iteration under torch.profiler.", ""]
    device = torch.device("cpu")
    for precision in precisions:
        before = cpu_snapshot()
        cfg, member, content, lr_img, hr_img = train_setup("config.yaml", precision, 128)
        step = [0]

        def iteration():
            for _ in range(2):
                gan_step(member, lr_img, hr_img, step[0], cfg, device, content, None)
                step[0] += 1

        iteration()  # warm-up
        times = {DISCRIMINATOR: [], GENERATOR: []}
        for _ in range(2 * reps):
            kind = update_kind(step[0], cfg.train.g_updates, cfg.train.d_updates)
            start = time.perf_counter()
            gan_step(member, lr_img, hr_img, step[0], cfg, device, content, None)
            times[kind].append(time.perf_counter() - start)
            step[0] += 1
        d_s, g_s = statistics.median(times[DISCRIMINATOR]), statistics.median(times[GENERATOR])
        parts = {name: statistics.median(timings(fn, reps, warmup))
                 for name, fn in _components(cfg, member, content, lr_img, hr_img).items()}
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=True) as prof:
            iteration()
        busy = foreign_load(before, cpu_snapshot())
        averages = prof.key_averages()
        total = sum(e.self_cpu_time_total for e in averages) / 1e6
        lines += [f"## {precision} (runtime.amp {'none' if precision == 'fp32' else precision})", ""]
        if busy > BUSY_FRACTION:
            lines += [f"NOTE: taken on a busy CPU: other processes used {busy:.0%} of the cores meanwhile; absolute "
                      "times are inflated and shares approximate. Rerun on a quiet CPU.", ""]
        lines += [f"iteration {d_s + g_s:.2f} s = D update {d_s:.2f} s + G update {g_s:.2f} s", "",
                  "parts, each timed alone:"]
        for name, seconds in parts.items():
            whole = d_s if name.startswith("D update") else g_s
            lines.append(f"  {seconds:7.3f} s  {100 * seconds / whole:5.1f}% of its update  {name}")
        lines += ["", f"operators under torch.profiler, self CPU time by group (total {total:.2f} s):"]
        for group, seconds in op_groups(averages):
            lines.append(f"  {seconds:7.3f} s  {100 * seconds / total:5.1f}%  {group}")
        lines += ["", "top operators by self CPU time, by input shape:",
                  prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total",
                                                                    row_limit=row_limit), ""]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=3, help="timed runs per part (median)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs first")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--out", type=Path, default=RESULTS / "profile_train_x4.txt")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    text = profile_train(reps=args.reps, warmup=args.warmup)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
