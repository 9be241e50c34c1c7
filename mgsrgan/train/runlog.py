"""Training logs: a JSONL file always, a human log line, TensorBoard scalars and images when installed.

Only rank 0 writes (the caller passes enabled=False elsewhere).
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch
from tqdm import tqdm


def _tensorboard_writer(log_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter  # needs the optional `tensorboard` package
    except ImportError:
        return None
    return SummaryWriter(str(log_dir))


def format_eta(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class RunLog:
    def __init__(self, run_dir: Path | None, *, enabled: bool = True, tensorboard: bool = True,
                 quiet: bool = False, filename: str = "log.jsonl") -> None:
        self.enabled = enabled and run_dir is not None
        self.quiet = quiet
        self.jsonl = open(Path(run_dir) / filename, "a") if self.enabled else None
        self.tb = _tensorboard_writer(Path(run_dir) / "tensorboard") if self.enabled and tensorboard else None

    def event(self, kind: str, **fields) -> None:
        """One JSON line: {"time", "event", ...fields}; floats from tensors converted here."""
        if not self.enabled:
            return
        record = {"time": round(time.time(), 3), "event": kind}
        for key, value in fields.items():
            record[key] = value.item() if isinstance(value, torch.Tensor) else value
        self.jsonl.write(json.dumps(record) + "\n")
        self.jsonl.flush()

    def say(self, text: str) -> None:
        if self.enabled and not self.quiet:
            tqdm.write(text)

    def scalars(self, tag: str, values: dict[str, float], step: int) -> None:
        if self.tb is not None:
            for key, value in values.items():
                self.tb.add_scalar(f"{tag}/{key}", value, step)

    def image(self, tag: str, img: torch.Tensor, step: int) -> None:
        """img (3, H, W) float in [0, 1]."""
        if self.tb is not None:
            self.tb.add_image(tag, img.clamp(0, 1), step)

    def close(self) -> None:
        if self.jsonl is not None:
            self.jsonl.close()
        if self.tb is not None:
            self.tb.close()
