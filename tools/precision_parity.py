"""fp32 vs bf16 inference with the shipped ensemble (weights/, pretrain checkpoints, mean of 3 members, x2), on CPU.

    nice python -m tools.precision_parity [--data ../shared/data/Set5 ../shared/data/Set14] [--size 256]

1. Speed: Upscaler.pretrained(precision=...) on one random size x size LR image, fp32 and bf16 runs interleaved
   (one warm-up each), median and min seconds; also the largest output difference and whether tiled (128 LR px,
   pad = receptive radius) equals untiled bit for bit in each precision.
2. Quality: the repo's evaluation protocol (mgsrgan.evaluate.protocol.load_run_models + evaluate_folder: modcrop, PIL
   bicubic LR, 8-bit SR, Y-PSNR/SSIM with crop = scale) in fp32 and in bf16, per set; plus, per set, the largest
   difference between the fp32 and bf16 8-bit ensemble outputs (levels) and the share of samples that differ.
Writes tools/results/precision_parity.{json,md}. bf16 needs a CPU with native bf16 (AVX512-BF16 or AMX).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from mgsrgan.device import cpu_has_bf16, resolve_precision
from mgsrgan.infer.ensemble import shipped_dir

from mgsrgan.evaluate.protocol import charge_shared_passes, evaluate_folder, load_run_models, summarize
from mgsrgan.infer.upscaler import Upscaler

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_WEIGHTS = shipped_dir(2)
RESULTS = ROOT / "tools" / "results"
PRECISIONS = ("fp32", "bf16")
ROW = "ensemble-mean"
TILE = 128  # LR pixels: 4 tiles on a 256x256 input


def time_upscaler(size: int, repeats: int, seed: int) -> dict:
    torch.manual_seed(seed)
    lr_img = torch.rand(1, 3, size, size)
    upscalers = {p: Upscaler.pretrained(strategy="mean", device="cpu", precision=p) for p in PRECISIONS}
    outputs = {p: up.upscale_tensor(lr_img) for p, up in upscalers.items()}  # warm-up (oneDNN kernel setup)
    seconds: dict[str, list[float]] = {p: [] for p in PRECISIONS}
    for _ in range(repeats):  # interleaved: a load change on the shared CPU hits both precisions alike
        for p, up in upscalers.items():
            start = time.perf_counter()
            up.upscale_tensor(lr_img)
            seconds[p].append(time.perf_counter() - start)
    tiled_exact = {}
    for p in PRECISIONS:
        tiled = Upscaler.pretrained(strategy="mean", device="cpu", precision=p, tile=TILE).upscale_tensor(lr_img)
        tiled_exact[p] = bool(torch.equal(tiled, outputs[p]))
    diff = (outputs["bf16"] - outputs["fp32"]).abs()
    levels = ((outputs["bf16"] * 255).round() - (outputs["fp32"] * 255).round()).abs()
    return {"input": f"1x3x{size}x{size} uniform random LR, seed {seed}", "repeats": repeats,
            "seconds": seconds, "median_s": {p: statistics.median(s) for p, s in seconds.items()},
            "min_s": {p: min(s) for p, s in seconds.items()},
            "speedup_median": statistics.median(seconds["fp32"]) / statistics.median(seconds["bf16"]),
            "max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
            "max_level_diff": int(levels.max()), "tile": TILE, "tiled_equals_untiled": tiled_exact}


def recording(upscale, store: list):
    def run(lr_img):
        sr_img = upscale(lr_img)
        store.append(sr_img)
        return sr_img
    return run


def score_sets(folders: list[Path]) -> dict:
    report = {}
    for folder in folders:
        per_precision, images = {}, {}
        for p in PRECISIONS:
            dtype = resolve_precision(p, torch.device("cpu"))
            models = load_run_models(SHIPPED_WEIGHTS, checkpoint="pretrain", strategies=["mean"], device="cpu",
                                     precision=dtype)
            images[p] = []
            upscalers = dict(models.upscalers)
            upscalers[ROW] = recording(upscalers[ROW], images[p])
            results = charge_shared_passes(evaluate_folder(folder, upscalers, scale=models.scale), models.uses)
            per_precision[p] = {"models": summarize(results)[folder.name],
                                "images": {r.image: r.psnr for r in results if r.model == ROW}}
        pairs = list(zip(images["fp32"], images["bf16"]))
        levels = [np.abs(a.astype(int) - b.astype(int)) for a, b in pairs]
        report[folder.name] = {
            "folder": str(folder), **per_precision,
            "psnr_delta_db": {m: per_precision["bf16"]["models"][m]["psnr"] - per_precision["fp32"]["models"][m]["psnr"]
                              for m in per_precision["fp32"]["models"]},
            "max_level_diff": int(max(d.max() for d in levels)),
            "share_of_samples_differing": float(sum((d > 0).sum() for d in levels) / sum(d.size for d in levels)),
        }
    return report


def markdown(report: dict) -> str:
    t = report["timing"]
    lines = ["# fp32 vs bf16 inference (shipped ensemble, x2, CPU)", "",
             f"Machine: {report['machine']}. Generated by `python -m tools.precision_parity`; the CPU was shared with "
             "a training job, so absolute seconds are noisy (fp32/bf16 runs were interleaved).", "",
             f"## Speed: `Upscaler.pretrained(strategy=\"mean\")` on a {t['input']}", "",
             "| precision | median s | min s |", "| --- | ---: | ---: |"]
    lines += [f"| {p} | {t['median_s'][p]:.3f} | {t['min_s'][p]:.3f} |" for p in PRECISIONS]
    lines += ["", f"bf16 speed-up (median): **{t['speedup_median']:.2f}x**; bf16 vs fp32 output: max |diff| "
              f"{t['max_abs_diff']:.2e} (mean {t['mean_abs_diff']:.2e}), max {t['max_level_diff']} 8-bit level(s). "
              f"Tiled ({t['tile']} LR px, default pad) == untiled bit for bit: "
              + ", ".join(f"{p} {'yes' if ok else 'NO'}" for p, ok in t["tiled_equals_untiled"].items()) + ".", "",
              "## Quality: evaluation protocol (Y-PSNR/SSIM, crop 2, PIL bicubic LR), `--checkpoint pretrain`", "",
              "| set | model | PSNR fp32 | PSNR bf16 | delta (dB) | SSIM fp32 | SSIM bf16 | s/img fp32 | s/img bf16 |",
              "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, s in report["sets"].items():
        for model, row in s["fp32"]["models"].items():
            b = s["bf16"]["models"][model]
            delta = s["psnr_delta_db"][model]
            lines.append(f"| {name} | {model} | {row['psnr']:.4f} | {b['psnr']:.4f} | {delta:+.4f} | "
                         f"{row['ssim']:.4f} | {b['ssim']:.4f} | {row['seconds']:.3f} | {b['seconds']:.3f} |")
    lines += ["", "8-bit ensemble-mean outputs, bf16 vs fp32:", ""]
    lines += [f"- {name}: max {s['max_level_diff']} level(s); {100 * s['share_of_samples_differing']:.2f}% of samples "
              "differ" for name, s in report["sets"].items()]
    return "\n".join(lines) + "\n"


def machine() -> str:
    """CPU model, bf16 instruction sets, core count, torch version and threads."""
    model = platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        model = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                      if line.startswith("model name")), model)
    isa = [name for name, has in (("AVX512-BF16", torch.cpu._is_avx512_bf16_supported()),
                                  ("AMX", torch.cpu._is_amx_tile_supported())) if has]
    return (f"{model} ({', '.join(isa) or 'no native bf16'}), {os.cpu_count()} CPUs, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, nargs="+",
                        default=[ROOT.parent / "shared" / "data" / "Set5", ROOT.parent / "shared" / "data" / "Set14"])
    parser.add_argument("--size", type=int, default=256, help="LR side of the timing input (default 256)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not cpu_has_bf16():
        print("error: this CPU lacks native bf16 (AVX512-BF16 or AMX); nothing to compare", file=sys.stderr)
        return 2
    report = {"machine": machine(),
              "weights": str(SHIPPED_WEIGHTS), "checkpoint": "pretrain", "strategy": "mean"}
    report["timing"] = time_upscaler(args.size, args.repeats, args.seed)
    print(json.dumps(report["timing"], indent=2), file=sys.stderr)
    report["sets"] = score_sets(args.data)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "precision_parity.json").write_text(json.dumps(report, indent=2) + "\n")
    text = markdown(report)
    (RESULTS / "precision_parity.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
