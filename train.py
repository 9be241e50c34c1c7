"""Train a multi-generator SRGAN: python train.py --config config.yaml"""
from mgsrgan.cli.train import main

raise SystemExit(main())
