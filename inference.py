"""Upscale images with an mgsrgan ensemble: `python inference.py -h` (see mgsrgan/cli/infer.py)."""
from mgsrgan.cli.infer import main

raise SystemExit(main())
