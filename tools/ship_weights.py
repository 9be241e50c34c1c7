"""Copy a run's distortion (pretrain) and GAN checkpoints into weights/x<scale>/, the ensembles inference.py uses
when given no --run or --weights (`--scale` picks one).

    python -m tools.ship_weights runs/x2-k3        # -> weights/x2/
    python -m tools.ship_weights runs/x2-m1-seed4 --gan-into 1   # a one-member run's gan -> weights/x2/member_1

--gan-into K re-draws one slot: a one-member phase-2 run (its own seed, from member K's pretrain checkpoint) replaces
member K's gan checkpoint; the metadata then names slot K and the run it came from, the config stays the ensemble's.

Only generator tensors travel (the checkpoints are already generator-only); metadata (config, validation scores,
steps) is kept, so `weighted` and `best` work on the shipped ensemble too.
"""
import argparse
import shutil
import sys
from pathlib import Path

from mgsrgan.config import load_config
from mgsrgan.io.checkpoint import load_tensors, read_meta, save_checkpoint

ROOT = Path(__file__).resolve().parents[1]

SHIPPED = ("pretrain", "gan")  # distortion-oriented and perception-oriented members


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--dest", type=Path, default=None, help="default: weights/x<the run's scale>")
    parser.add_argument("--gan-into", type=int, metavar="K", default=None,
                        help="ship a one-member run's gan checkpoint as member K's (nothing else is copied)")
    args = parser.parse_args()
    if args.dest is None:
        args.dest = ROOT / "weights" / f"x{load_config(args.run / 'config.yaml').model.scale}"
    if args.gan_into is not None:
        return gan_into(args.run, args.dest, args.gan_into)
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


def gan_into(run: Path, dest: Path, slot: int) -> int:
    source = run / "member_0" / "gan.safetensors"
    target = dest / f"member_{slot}" / "gan.safetensors"
    if sorted(p.name for p in run.glob("member_*")) != ["member_0"] or not source.exists():
        print(f"error: --gan-into needs a one-member run with member_0/gan.safetensors; {run} is not one",
              file=sys.stderr)
        return 2
    if not target.parent.is_dir():
        print(f"error: {target.parent}: no such member folder to re-draw", file=sys.stderr)
        return 2
    meta = read_meta(source)
    meta.update(member=slot, redrawn_from=f"{run.name}/member_0 (seed {meta.get('seed')})")
    save_checkpoint(target, load_tensors(source), {k: v for k, v in meta.items() if k != "schema_version"})
    print(f"{source} -> {target} (step {meta['step']}, val {meta['val']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
