"""Train a multi-generator SRGAN: python train.py --config config.yaml"""
from mgsrgan.train_cli import main

raise SystemExit(main())
