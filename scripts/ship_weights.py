"""Copy a run's distortion (pretrain) and GAN checkpoints into weights/x<scale>/, the ensembles inference.py uses
when given no --run or --weights (`--scale` picks one).

    python scripts/ship_weights.py runs/x2-k3        # -> weights/x2/

Only generator tensors travel (the checkpoints are already generator-only); metadata (config, validation scores,
steps) is kept, so `weighted` and `best` work on the shipped ensemble too.
"""
import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mgsrgan.config import load_config  # noqa: E402
from mgsrgan.io.checkpoint import read_meta  # noqa: E402

SHIPPED = ("pretrain", "gan")  # distortion-oriented and perception-oriented members


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--dest", type=Path, default=None, help="default: weights/x<the run's scale>")
    args = parser.parse_args()
    if args.dest is None:
        args.dest = ROOT / "weights" / f"x{load_config(args.run / 'config.yaml', saved=True).model.scale}"
    members = sorted(args.run.glob("member_*"))
    if not members:
        print(f"error: {args.run}: no member_<k> folders", file=sys.stderr)
        return 2
    for member in members:
        (args.dest / member.name).mkdir(parents=True, exist_ok=True)
        for name in SHIPPED:
            source = member / f"{name}.safetensors"
            if not source.exists():
                print(f"{source}: not there (phase not finished); not shipped")
                continue
            meta = read_meta(source)  # refuses a file that is not an mgsrgan checkpoint
            shutil.copyfile(source, args.dest / member.name / source.name)
            print(f"{source} -> {args.dest / member.name / source.name} (step {meta['step']}, val {meta['val']})")
    shutil.copyfile(args.run / "config.yaml", args.dest / "config.yaml")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
