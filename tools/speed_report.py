"""tools/speed.py's report, pure: ratios ours / BasicSR, issue 12's targets, speed.md from a speed.json dict.

Our cases and BasicSR's come from one invocation (`python -m tools.speed --basicsr`), so every ratio is of two
times taken in one machine state; nothing is normalised by a figure from another day.
"""
from __future__ import annotations

BUSY_FRACTION = 0.05  # other processes above 5% of the cores during a case: flagged (BasicSR's script's threshold)
# Issue 12's targets: ours / BasicSR in throughput (BasicSR's seconds / ours) at our default precision (auto = bf16
# on CPUs with native bf16), and the inference conv rate as a share of the bf16 matmul peak of the same run.
TARGETS = {"infer_x4": 3.5, "pixel_x4": 2.5, "srgan_x4": 2.0}
CONV_PEAK_TARGET = 0.60
# (key, what, our fp32 case, our fast case, BasicSR's case)
COMPARISONS = (
    ("infer_x4", "x4 inference 256^2 -> 1024^2 (Upscaler, BN folded; BasicSR: MSRResNet)", "infer_x4_fp32",
     "infer_x4_auto", "infer_x4_lr256"),
    ("pixel_x4", "pixel-loss x4 step, batch 16, HR 128 (`pixel_step`)", "pixel_x4_fp32", "pixel_x4_bf16",
     "pixel_x4_hr128"),
    ("srgan_x4", "SRGAN x4 iteration, 1 D + 1 G update, batch 16, HR 128, VGG19 5_4 (`gan_step` x 2)",
     "srgan_x4_fp32", "srgan_x4_bf16", "srgan_x4_hr128"),
)


def speedup(basicsr_s: float | None, ours_s: float | None) -> float | None:
    """Ours / BasicSR in throughput: BasicSR's seconds over ours (above 1: ours is faster); None if one is missing."""
    if not basicsr_s or not ours_s:
        return None
    return basicsr_s / ours_s


def compare(cases: dict[str, dict], basicsr: dict | None) -> list[dict]:
    """One row per COMPARISONS entry: our fp32 and fast (bf16/auto) seconds, BasicSR's median, both ratios, target."""
    peer = (basicsr or {}).get("results", {})
    rows = []
    for key, what, ours_fp32, ours_fast, theirs in COMPARISONS:
        fp32_s = cases.get(ours_fp32, {}).get("seconds")
        fast_s = cases.get(ours_fast, {}).get("seconds")
        basicsr_s = peer.get(theirs, {}).get("median_s")
        ratio_fast = speedup(basicsr_s, fast_s)
        busy = [name for name, r in ((ours_fp32, cases.get(ours_fp32, {})), (ours_fast, cases.get(ours_fast, {})))
                if r.get("foreign_cpu_frac", 0.0) > BUSY_FRACTION]
        if peer.get(theirs, {}).get("contaminated"):
            busy.append(f"basicsr:{theirs}")
        rows.append({"key": key, "what": what, "ours_fp32_s": fp32_s, "ours_fast_s": fast_s,
                     "fast_dtype": cases.get(ours_fast, {}).get("dtype", "bfloat16"), "basicsr_s": basicsr_s,
                     "speedup_fp32": speedup(basicsr_s, fp32_s), "speedup_fast": ratio_fast,
                     "target": TARGETS[key], "met": None if ratio_fast is None else ratio_fast >= TARGETS[key],
                     "busy": busy})
    return rows


def conv_vs_matmul(cases: dict[str, dict]) -> dict | None:
    """x4 inference conv GFLOP/s as a share of this run's matmul peak: fp32 vs fp32, auto (bf16) vs bf16."""
    matmul = cases.get("matmul")
    if not matmul:
        return None
    out = {"matmul_fp32_gflops": matmul["fp32"]["gflops_peak"], "matmul_bf16_gflops": matmul["bf16"]["gflops_peak"],
           "target": CONV_PEAK_TARGET}
    for name, peak in (("fp32", out["matmul_fp32_gflops"]), ("auto", out["matmul_bf16_gflops"])):
        case = cases.get(f"infer_x4_{name}")
        if case:
            out[f"{name}_conv_gflops"] = case["conv_gflops"]
            out[f"{name}_fraction"] = case["conv_gflops"] / peak
    if "auto_fraction" in out:
        out["met"] = out["auto_fraction"] >= CONV_PEAK_TARGET
    for name, case in cases.items():  # training steps: bf16 against the bf16 peak, fp32 against the fp32 one
        if name.startswith("pixel_") and "conv_gflops" in case:
            peak = out["matmul_fp32_gflops" if case["precision"] == "fp32" else "matmul_bf16_gflops"]
            out.setdefault("steps", {})[name] = {"gflops": case["conv_gflops"], "fraction": case["conv_gflops"] / peak}
    return out


def _num(value: float | None, fmt: str = "{:.3g}", missing: str = "-") -> str:
    return missing if value is None else fmt.format(value)


def _detail(case: dict) -> str:
    name = case.get("case", "")
    if name == "matmul":
        return (f"fp32 {case['fp32']['gflops_peak']:.0f} GFLOP/s, bf16 {case['bf16']['gflops_peak']:.0f} GFLOP/s "
                "(peak = fastest run)")
    if name.startswith("infer"):
        return (f"{case['dtype']}, {case['output_mp_per_s']:.3f} output MP/s, conv {case['conv_gflops']:.0f} "
                "GFLOP/s")
    if name == "tail_x4":
        return "; ".join(f"{p}: tail {case[p]['tail_plain']:.3f} -> {case[p]['tail_subpixel']:.3f} s "
                         f"({case[p]['tail_speedup']:.2f}x), generator {case[p]['generator_plain']:.2f} -> "
                         f"{case[p]['generator_subpixel']:.2f} s" for p in ("fp32", "bf16"))
    if "d_update_s" in case:
        return (f"D {case['d_update_s']:.2f} s + G {case['g_update_s']:.2f} s, HR {case['hr_patch']}, "
                f"batch {case['batch']}, content {case['content']}, {case['adversarial']}")
    if "samples_per_s" in case:
        return f"HR {case['hr_patch']}, batch {case['batch']}, {case['pixel']}, {case['samples_per_s']:.1f} samples/s"
    return ""


def markdown(report: dict) -> str:
    """speed.md from a speed.json report: the side-by-side table, the conv-rate line, then every case of ours."""
    machine, settings = report["machine"], report["settings"]
    basicsr = report.get("basicsr")
    lines = ["# Speed: mgsrgan" + (" and BasicSR 1.4.2, one run" if basicsr else ""), "",
             f"`{report['command']}` at {report['time']}, commit {report['git_commit'][:10]}. CPU: "
             f"{machine['cpu_model']} ({machine['cores']} cores, native bf16: {machine['native_bf16']}), torch "
             f"{machine['torch']}, threads {settings['threads']}. Median of {settings['reps']} timed runs after "
             f"{settings['warmup']} warm-up, each of our cases in its own process"
             + ("; BasicSR's `run.sh` (fp32, its own venv) ran right after with the same counts." if basicsr
                else "."), ""]
    if basicsr:
        lines += ["Speed-up = BasicSR's seconds / ours (ours / BasicSR in throughput; above 1: ours is faster). "
                  "The target applies to our default precision (`auto`: bf16 on this CPU).", "",
                  "| what | ours fp32 (s) | ours bf16 (s) | BasicSR fp32 (s) | speed-up fp32 | speed-up bf16 "
                  "| target |", "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
        for row in report["comparison"]:
            verdict = "-" if row["met"] is None else ("met" if row["met"] else
                                                      f"missed by {row['target'] - row['speedup_fast']:.2f}x")
            busy = f" (busy: {', '.join(row['busy'])})" if row["busy"] else ""
            lines.append(f"| {row['what']}{busy} | {_num(row['ours_fp32_s'])} | {_num(row['ours_fast_s'])} | "
                         f"{_num(row['basicsr_s'])} | {_num(row['speedup_fp32'], '{:.2f}x')} | "
                         f"{_num(row['speedup_fast'], '{:.2f}x')} | {row['target']}x: {verdict} |")
        lines.append("")
    conv = report.get("conv_vs_matmul")
    if conv and "auto_fraction" in conv:
        verdict = "met" if conv["met"] else f"missed by {100 * (CONV_PEAK_TARGET - conv['auto_fraction']):.0f} points"
        fp32 = (f"; fp32: {conv['fp32_conv_gflops']:.0f} GFLOP/s = {100 * conv['fp32_fraction']:.0f}% of the fp32 "
                f"matmul peak ({conv['matmul_fp32_gflops']:.0f})" if "fp32_fraction" in conv else "")
        lines += [f"x4 inference conv rate (the network's FLOPs, 9x9 tail counted as such), auto: "
                  f"{conv['auto_conv_gflops']:.0f} GFLOP/s = {100 * conv['auto_fraction']:.0f}% of this run's "
                  f"4096^2 bf16 matmul peak ({conv['matmul_bf16_gflops']:.0f} GFLOP/s); target "
                  f"{100 * CONV_PEAK_TARGET:.0f}%: {verdict}{fp32}.", ""]
    for name, step in (conv or {}).get("steps", {}).items():
        peak = "fp32" if name.endswith("fp32") else "bf16"
        lines += [f"Pixel-loss step `{name}` (the network's conv FLOPs x 3 for forward and backward): "
                  f"{step['gflops']:.0f} GFLOP/s = {100 * step['fraction']:.0f}% of this run's {peak} matmul peak "
                  f"({conv[f'matmul_{peak}_gflops']:.0f} GFLOP/s); target {100 * CONV_PEAK_TARGET:.0f}%.", ""]
    busy = [n for n, c in report["cases"].items() if c.get("foreign_cpu_frac", 0.0) > BUSY_FRACTION]
    if basicsr:
        busy += [f"basicsr:{n}" for n, r in basicsr.get("results", {}).items() if r.get("contaminated")]
    lines += [("Machine load: other processes used more than "
               f"{100 * BUSY_FRACTION:.0f}% of the cores during {', '.join(busy)}: those times are not clean."
               if busy else f"Machine load: under {100 * BUSY_FRACTION:.0f}% from other processes in every case."),
              "", "## Our cases", "", "| case | median (s) | min (s) | busy | detail |",
              "| --- | ---: | ---: | ---: | --- |"]
    for name, case in report["cases"].items():
        lines.append(f"| {name} | {_num(case.get('seconds'))} | {_num(case.get('min_s'))} | "
                     f"{_num(case.get('foreign_cpu_frac'), '{:.0%}')} | {_detail(case)} |")
    if basicsr:
        lines += ["", "## BasicSR cases", "", "| case | median (s) | busy | detail |", "| --- | ---: | ---: | --- |"]
        for name, r in basicsr.get("results", {}).items():
            detail = (f"{r['gflops_median']:.0f} GFLOP/s" if "gflops_median" in r else
                      f"{r['output_megapixels_per_s']:.3f} output MP/s" if "output_megapixels_per_s" in r else
                      f"{r.get('model_type', '')}, HR {r.get('hr_patch', '')}, batch {r.get('batch', '')}")
            lines.append(f"| {name} | {_num(r.get('median_s'))} | "
                         f"{_num(r.get('machine_load', {}).get('foreign_cpu_frac'), '{:.0%}')} | {detail} |")
    return "\n".join(lines) + "\n"
