"""Evaluate a training run on folders of HR images: python evaluate.py --run RUN_DIR --data DIR [DIR ...]"""
from mgsrgan.cli.evaluate import main

raise SystemExit(main())
