"""`mgsrgan <command>`: one entry point over the per-command CLIs (each also reachable as a root script)."""
from __future__ import annotations

import sys

USAGE = """usage: mgsrgan <command> [options]

commands:
  train      train an ensemble                 (same as: python train.py ...)
  campaign   run or continue the training campaign (configs/campaign.yaml), shipping into weights/
  infer      upscale a folder of images        (same as: python inference.py ...)
  evaluate   score a run on benchmark folders  (same as: python evaluate.py ...)
  export     export a member or the ensemble to ONNX or TorchScript
  serve      the web page and HTTP API (http://127.0.0.1:8000)
  download   fetch a dataset (div2k)

`mgsrgan <command> --help` explains each."""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    # Imports are per command so `mgsrgan download` does not pay for importing the training stack.
    if command == "train":
        from mgsrgan.cli.train import main as command_main
    elif command == "campaign":
        from mgsrgan.cli.campaign import main as command_main
    elif command == "infer":
        from mgsrgan.cli.infer import main as command_main
    elif command == "evaluate":
        from mgsrgan.cli.evaluate import main as command_main
    elif command == "export":
        from mgsrgan.cli.export import main as command_main
    elif command == "serve":
        from mgsrgan.cli.serve import main as command_main
    elif command == "download":
        from mgsrgan.cli.download import main as command_main
        rest = argv  # download's parser takes its dataset as a sub-command: `download div2k ...`
    else:
        print(f"error: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    return command_main(rest)


if __name__ == "__main__":
    raise SystemExit(main())
