"""Evaluate a training run on folders of HR images: python evaluate.py --run RUN_DIR --data DIR [DIR ...]"""
from mgsrgan.evaluate_cli import main

raise SystemExit(main())
