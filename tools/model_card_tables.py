"""Markdown tables for weights/x<scale>/MODEL_CARD.md from evaluate.py JSON files and tools/results/peers.json.

    python -m tools.model_card_tables weights/x2/eval_pretrain.json weights/x2/eval_gan.json \
        --peers tools/results/peers.json
"""
import argparse
import json
from pathlib import Path

SETS = ("Set5", "Set14", "BSD100", "validation")


def cell(scores: dict | None) -> str:
    """PSNR / SSIM [/ ST-LPIPS-Alex] [/ ST-LPIPS (VGG16)], whichever the row has."""
    if not scores:
        return "n/a"
    text = f"{scores['psnr']:.2f} / {scores['ssim']:.4f}"
    for key in ("stlpips_alex", "stlpips"):
        if scores.get(key) is not None:
            text += f" / {scores[key]:.4f}"
    return text


def artifact_cell(scores: dict | None) -> str:
    """artifact amplitude (the HR's) / colour shift R, G, B, in 8-bit levels."""
    if not scores or scores.get("artifact") is None:
        return "n/a"
    return (f"{scores['artifact']:.3f} ({scores['artifact_hr']:.3f}) / {scores['shift_r']:+.2f}, "
            f"{scores['shift_g']:+.2f}, {scores['shift_b']:+.2f}")


def table(title: str, rows: dict[str, dict[str, dict]], render=cell) -> str:
    sets = [s for s in SETS if any(s in per_set for per_set in rows.values())]
    lines = [f"### {title}", "", "| model | " + " | ".join(sets) + " |", "| --- |" + " ---: |" * len(sets)]
    for name, per_set in rows.items():
        lines.append(f"| {name} | " + " | ".join(render(per_set.get(s)) for s in sets) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("evals", nargs="+", type=Path)
    parser.add_argument("--peers", type=Path)
    args = parser.parse_args()
    merged: dict[tuple, tuple[list[str], dict[str, dict[str, dict]]]] = {}  # files of one checkpoint, one table
    for path in args.evals:
        report = json.loads(path.read_text())
        key = (report["checkpoint"], report["scale"], bool(report.get("self_ensemble")))
        sources, rows = merged.setdefault(key, ([], {}))
        sources.append(f"`{path}`")
        for set_name, entry in report["sets"].items():
            for model, scores in entry["models"].items():
                rows.setdefault(model, {})[set_name] = scores
    for (checkpoint, scale, self_ensemble), (sources, rows) in merged.items():
        x8 = ", geometric self-ensemble" if self_ensemble else ""
        print(table(f"`{checkpoint}` checkpoints{x8}, x{scale} (PSNR dB / SSIM / ST-LPIPS-Alex / ST-LPIPS-VGG "
                    f"where measured; from {' and '.join(sources)})", rows))
        print()
        if any(r.get("artifact") is not None for per_set in rows.values() for r in per_set.values()):
            print(table(f"`{checkpoint}` checkpoints{x8}, x{scale}: periodic-artifact amplitude (HR's own) / colour "
                        "shift R, G, B (8-bit levels)", rows, artifact_cell))
            print()
    if args.peers:
        peers = json.loads(args.peers.read_text())
        for scale, per_set in peers["results"].items():  # one table per scale the peers file holds
            rows = {}
            for set_name, models in per_set.items():
                for model, scores in models.items():
                    rows.setdefault(f"{model} (OpenCV)" if model != "bicubic" else model, {})[set_name] = scores
            third = "".join(f" / {label}" for key, label in (("stlpips_alex", "ST-LPIPS-Alex"), ("stlpips", "ST-LPIPS"))
                            if all(key in r for per_set in rows.values() for r in per_set.values()))
            print(table(f"OpenCV dnn_superres peers, x{scale} (PSNR dB / SSIM{third}; from `{args.peers}`)", rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
