"""Validation PSNR against training time, from a run's log.jsonl or the campaign log: a PNG and a Markdown table.

    python -m tools.training_curve runs/x4-k3 --out weights/x4/training_curve.png
    python -m tools.training_curve --campaign weights/campaign_log.jsonl --stage x2-pixel \
        --out weights/campaign/x2-pixel/training_curve.png      # PSNR against CPU-hours, across machines

Minutes count wall-clock time spent training: the gaps between a stop and its `--resume` are left out (the clock
restarts at each "start" event). On these 2-core machines the run has the CPU to itself, so wall minutes are
CPU-minutes of the machine. One line per member and one for the mean of the members at each validation step.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from PIL import Image, ImageDraw

from mgsrgan.train.campaign import read_log

WIDTH, HEIGHT, PAD = 640, 400, 60  # canvas and margin, pixels
MEMBER_COLOURS = ((30, 80, 200), (200, 40, 40), (30, 150, 60), (150, 60, 180), (200, 130, 0))


def validation_curve(lines: list[str]) -> dict[str, list[tuple[float, float, str, int]]]:
    """log.jsonl lines -> member name ("0", "1", ..., "mean") -> [(training minutes, PSNR dB, phase, step)].

    Training minutes: time since the run's first "start", minus every gap between the last event before a "start"
    and that "start" (a stop, then --resume)."""
    curves: dict[str, list[tuple[float, float, str, int]]] = {}
    elapsed, last_time = 0.0, None
    for line in lines:
        event = json.loads(line)
        now = event["time"]
        if event["event"] != "start" and last_time is not None:
            elapsed += now - last_time
        last_time = now
        if event["event"] == "val" and "psnr" in event and "step" in event:
            member = str(event["member"])
            curves.setdefault(member, []).append((elapsed / 60.0, event["psnr"], event["phase"], event["step"]))
    members = [name for name in curves if name.isdigit()]
    by_step: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for name in members:
        for minutes, psnr, phase, step in curves[name]:
            by_step.setdefault((phase, step), []).append((minutes, psnr))
    curves["mean"] = [(max(m for m, _ in points), sum(p for _, p in points) / len(points), phase, step)
                      for (phase, step), points in by_step.items() if len(points) == len(members)]
    curves["mean"].sort()
    return curves


def campaign_curve(records: list[dict], stage: str) -> dict[str, list[tuple[float, float, str, int]]]:
    """Campaign log records -> {"mean": [(CPU-hours, PSNR dB, "pixel", campaign step)]}: the stage's validations,
    each at the CPU time the campaign had spent on the stage by then (every machine and stretch counted)."""
    points = [(r["cpu_s"] / 3600.0, r["psnr"], "pixel", r["step"]) for r in records
              if r.get("stage") == stage and r.get("event") == "val"]
    return {"mean": sorted(points, key=lambda point: point[3])}


def plot(curves: dict[str, list[tuple[float, float, str, int]]], title: str, path: Path, unit: str = "min") -> None:
    points = [(m, p) for values in curves.values() for m, p, _, _ in values]
    x0, x1 = 0.0, max(m for m, _ in points) * 1.05 or 1.0
    y0, y1 = min(p for _, p in points) - 0.1, max(p for _, p in points) + 0.1
    canvas = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(canvas)

    def at(minutes: float, psnr: float) -> tuple[float, float]:
        return (PAD + (minutes - x0) / (x1 - x0) * (WIDTH - 2 * PAD),
                HEIGHT - PAD - (psnr - y0) / (y1 - y0) * (HEIGHT - 2 * PAD))
    draw.rectangle([PAD, PAD, WIDTH - PAD, HEIGHT - PAD], outline="black")
    draw.text((PAD, 20), f"{title}: validation PSNR (dB, up) vs training time ({unit}, across)", fill="black")
    draw.text((PAD, HEIGHT - PAD + 8), f"{x0:.0f}", fill="black")
    draw.text((WIDTH - PAD - 40, HEIGHT - PAD + 8), f"{x1:.1f} {unit}", fill="black")
    draw.text((5, HEIGHT - PAD - 10), f"{y0:.2f}", fill="black")
    draw.text((5, PAD), f"{y1:.2f}", fill="black")
    for index, (name, values) in enumerate(curves.items()):
        colour = (0, 0, 0) if name == "mean" else MEMBER_COLOURS[index % len(MEMBER_COLOURS)]
        xy = [at(m, p) for m, p, _, _ in values]
        if len(xy) > 1:
            draw.line(xy, fill=colour, width=3 if name == "mean" else 1)
        for x, y in xy:
            draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colour)
        label = ("members' average" if unit == "min" else "validation") if name == "mean" else f"member {name}"
        draw.text((WIDTH - PAD - 110, HEIGHT - PAD - 14 * (len(curves) - index) - 4), label, fill=colour)
    canvas.save(path)


def markdown(curves: dict[str, list[tuple[float, float, str, int]]]) -> str:
    rows = ["| phase | step | minutes | mean PSNR (dB) |", "| --- | ---: | ---: | ---: |"]
    rows += [f"| {phase} | {step} | {minutes:.0f} | {psnr:.2f} |" for minutes, psnr, phase, step in curves["mean"]]
    return "\n".join(rows)


def campaign_table(records: list[dict], stage: str) -> str:
    rows = ["| step | patches seen | CPU-hours | validation PSNR (dB) |", "| ---: | ---: | ---: | ---: |"]
    rows += [f"| {r['step']} | {r['patches']:,} | {r['cpu_s'] / 3600:.2f} | {r['psnr']:.2f} |" for r in records
             if r.get("stage") == stage and r.get("event") == "val"]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, nargs="?", help="run folder holding log.jsonl")
    parser.add_argument("--campaign", type=Path, help="the campaign log (weights/campaign_log.jsonl) instead of a run")
    parser.add_argument("--stage", help="with --campaign: the stage to plot")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write; the table goes beside it (.md)")
    args = parser.parse_args(argv)
    if args.campaign is not None:
        return campaign_main(args.campaign, args.stage, args.out)
    if args.run is None:
        parser.error("give a run folder, or --campaign LOG --stage NAME")
    log = args.run / "log.jsonl"
    if not log.is_file():
        print(f"error: {log}: no such file", file=sys.stderr)
        return 2
    curves = validation_curve(log.read_text().splitlines())
    if not curves.get("mean"):
        print(f"error: {log}: no validation events", file=sys.stderr)
        return 2
    plot(curves, args.run.name, args.out)
    args.out.with_suffix(".md").write_text(markdown(curves) + "\n")
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")
    return 0


def campaign_main(log: Path, stage: str | None, out: Path) -> int:
    records = read_log(log)
    curves = campaign_curve(records, stage or "")
    if not curves["mean"]:
        stages = sorted({r["stage"] for r in records if r.get("event") == "val"})
        print(f"error: {log}: no validations of stage {stage!r} (stages with some: {', '.join(stages)})",
              file=sys.stderr)
        return 2
    plot(curves, f"campaign {stage}", out, unit="CPU-h")
    out.with_suffix(".md").write_text(campaign_table(records, stage) + "\n")
    print(f"wrote {out} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
