"""Upscale images with an mgsrgan ensemble: `python inference.py -h` (see mgsrgan/inference_cli.py)."""
from mgsrgan.inference_cli import main

raise SystemExit(main())
