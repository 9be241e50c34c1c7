"""The run log: JSONL always; TensorBoard scalars and sample images when the optional `tensorboard` is installed.

The training -> writer path is checked with a recording writer, so it runs where tensorboard is absent (CI); only
the event-file round trip needs the real package.
"""
from __future__ import annotations

import json
import sys

import pytest
import torch

import mgsrgan.train.runlog as runlog
from mgsrgan.train.loop import train
from mgsrgan.train.runlog import RunLog
from tests.conftest import make_context, tiny_config


class RecordingWriter:
    """The part of torch's SummaryWriter that RunLog calls, recording each call."""

    def __init__(self) -> None:
        self.scalars: list[tuple[str, float, int]] = []
        self.images: list[tuple[str, tuple[int, ...], int, float, float]] = []
        self.closed = False

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        self.scalars.append((tag, float(value), step))

    def add_image(self, tag: str, img: torch.Tensor, step: int) -> None:
        self.images.append((tag, tuple(img.shape), step, float(img.min()), float(img.max())))

    def close(self) -> None:
        self.closed = True


def test_training_sends_its_scalars_and_sample_images_to_tensorboard(tmp_path, monkeypatch):
    writer = RecordingWriter()
    monkeypatch.setattr(runlog, "_tensorboard_writer", lambda log_dir: writer)
    raw = tiny_config(tmp_path, members=1, pretrain_steps=2, val_every=1)  # both phases, validated every step
    ctx = make_context(raw, tmp_path / "run")
    ctx.log = RunLog(tmp_path / "run", tensorboard=True, quiet=True)
    train(ctx, resume=False)
    ctx.log.close()
    assert writer.closed
    events = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    pretrained = [e for e in events if e["event"] == "train" and e["phase"] == "pretrain"]
    validated = [e for e in events if e["event"] == "val" and e["member"] == 0 and "step" in e]
    assert [e["step"] for e in pretrained] == [1, 2] and len(validated) >= 2

    def logged(tag: str) -> list[tuple[int, float]]:
        return [(step, pytest.approx(value)) for name, value, step in writer.scalars if name == tag]

    # the JSONL's numbers, under train/member_<k>/<phase>/<name> and val/member_<k>/<name>
    assert logged("train/member_0/pretrain/pixel") == [(e["step"], e["pixel"]) for e in pretrained]
    assert logged("val/member_0/psnr") == [(e["step"], e["psnr"]) for e in validated]
    assert [step for _, _, step, _, _ in writer.images] == [e["step"] for e in validated]  # a sample per validation
    assert {tag for tag, *_ in writer.images} == {"sample/member_0"}
    assert all(shape[0] == 3 and 0.0 <= low and high <= 1.0 for _, shape, _, low, high in writer.images)


def test_without_tensorboard_the_log_is_jsonl_only(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # `import` fails, as when not installed
    log = RunLog(tmp_path, tensorboard=True, quiet=True)
    assert log.tb is None
    log.scalars("train/member_0/pretrain", {"pixel": 0.5}, 1)
    log.image("sample/member_0", torch.rand(3, 8, 8), 1)
    log.event("train", member=0, step=1, pixel=torch.tensor(0.5))
    log.close()
    assert not (tmp_path / "tensorboard").exists()
    (record,) = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert (record["event"], record["step"], record["pixel"]) == ("train", 1, 0.5)


def test_tensorboard_event_files_hold_what_was_logged(tmp_path):
    pytest.importorskip("tensorboard", reason="reads real event files: tensorboard is an optional extra "
                                              "(pip install tensorboard); the paths above run without it")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    log = RunLog(tmp_path, tensorboard=True, quiet=True)
    log.scalars("val/member_0", {"psnr": 25.5}, 3)
    log.image("sample/member_0", torch.rand(3, 8, 8), 3)
    log.close()
    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"images": 0}).Reload()
    assert [(e.step, e.value) for e in events.Scalars("val/member_0/psnr")] == [(3, 25.5)]
    assert [e.step for e in events.Images("sample/member_0")] == [3]
