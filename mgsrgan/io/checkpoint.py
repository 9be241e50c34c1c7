"""Checkpoints as safetensors files (no pickle), written atomically.

One file per checkpoint. Tensors are namespaced: `generator.*`, `discriminator.*`, `optim_g.*`, `optim_d.*`,
`rng.*`. The safetensors metadata holds one JSON document under the key "mgsrgan" with the schema version, the
resolved config, the generator architecture, the member, phase, step and validation scores. Inference reads only
`generator.*`, so every checkpoint of a run, full training state or not, is a usable model.

Run folder layout (written by training):
    RUN/config.yaml, RUN/log.jsonl, RUN/member_<k>/{last,best,pretrain,gan}.safetensors
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Sequence

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from mgsrgan.errors import UserError
from mgsrgan.io.atomic import atomic_write
from mgsrgan.models.generator import Generator

SCHEMA_VERSION = 1
META_KEY = "mgsrgan"


class Side(StrEnum):
    """The two kinds of member an ensemble holds, and the two training phases that make them. The value is the
    checkpoint file stem (member_<k>/<value>.safetensors), the phase name in checkpoint metadata and logs, and the
    CLI's --checkpoint value. PIXEL: trained on the pixel loss alone (SRResNet; highest PSNR, the distortion end of
    the perception-distortion curve). GAN: trained on from PIXEL with the adversarial and content losses (SRGAN)."""

    PIXEL = "pretrain"
    GAN = "gan"

    def __repr__(self) -> str:
        return repr(self.value)  # messages quote a side as the string the user types and the disk holds


CHECKPOINT_NAMES = ("best", "last", Side.PIXEL.value, Side.GAN.value)  # see the module docstring


class CheckpointError(UserError):
    """A checkpoint file that is missing, unreadable or not an mgsrgan checkpoint."""


@dataclass(frozen=True)
class GeneratorArch:
    scale: int
    num_blocks: int
    channels: int
    global_skip: str = "none"  # checkpoints written before the field existed have no skip

    def build(self) -> Generator:
        return Generator(scale=self.scale, num_blocks=self.num_blocks, channels=self.channels,
                         global_skip=self.global_skip)


def arch_of(generator: Generator) -> GeneratorArch:
    return GeneratorArch(generator.scale, generator.num_blocks, generator.channels, generator.global_skip)


def save_checkpoint(path: Path, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Write tensors + JSON metadata to a safetensors file atomically."""
    meta = {"schema_version": SCHEMA_VERSION, **meta}
    flat = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    atomic_write(Path(path), lambda tmp: save_file(flat, tmp, metadata={META_KEY: json.dumps(meta)}))


def read_meta(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with safe_open(str(path), framework="pt") as fh:
            raw = (fh.metadata() or {}).get(META_KEY)
    except Exception as err:  # safetensors raises several types for a damaged header
        raise CheckpointError(f"{path}: not a readable safetensors file ({err})") from None
    if raw is None:
        raise CheckpointError(f"{path}: a safetensors file, but not an mgsrgan checkpoint (no '{META_KEY}' metadata)")
    meta = json.loads(raw)
    if meta.get("schema_version") != SCHEMA_VERSION:
        raise CheckpointError(f"{path}: checkpoint schema {meta.get('schema_version')}, this mgsrgan reads "
                              f"{SCHEMA_VERSION}")
    return meta


def load_tensors(path: Path, prefix: str = "") -> dict[str, torch.Tensor]:
    """Tensors whose key starts with `prefix`, with the prefix stripped."""
    read_meta(path)
    with safe_open(str(path), framework="pt") as fh:
        return {k[len(prefix):]: fh.get_tensor(k) for k in fh.keys() if k.startswith(prefix)}


def update_val(path: Path, scores: dict[str, float | int | str]) -> None:
    """Merge `scores` into the checkpoint's `val` metadata (e.g. a held-out ST-LPIPS-Alex score added after
    training), tensors untouched; the file is replaced atomically."""
    meta = read_meta(path)
    meta["val"] = {**(meta.get("val") or {}), **scores}
    save_checkpoint(path, load_tensors(path), meta)


def load_generator(path: Path) -> tuple[Generator, dict]:
    """Build the generator stored in any mgsrgan checkpoint; returns (generator in eval mode, metadata)."""
    meta = read_meta(path)
    arch = GeneratorArch(**meta["arch"])
    generator = arch.build()
    state = load_tensors(path, "generator.")
    if not state:
        raise CheckpointError(f"{path}: holds no generator weights")
    generator.load_state_dict(state, strict=True)
    return generator.eval(), meta


def optimizer_tensors(optimizer: torch.optim.Optimizer, prefix: str) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state_dict into safetensors-ready tensors and a JSON-ready remainder."""
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for idx, entry in state["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{prefix}.{idx}.{key}"] = value
            else:
                scalars[f"{idx}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], extra: dict) -> None:
    """Inverse of optimizer_tensors; `tensors` already stripped of the prefix ("<idx>.<key>")."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    for name, value in extra["scalars"].items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": extra["param_groups"]})


def check_gan_started_from_pixel(pixel: Sequence[tuple[Path, dict]], gan: Sequence[tuple[Path, dict]]) -> None:
    """(path, meta) of pixel-loss and of GAN checkpoints, member by member: raise CheckpointError when a GAN
    checkpoint was trained from another pixel-loss generator than the pixel-loss checkpoint in its own member folder.
    A GAN checkpoint keeps the pixel-loss validation it started from (meta history.pretrain), a pixel-loss checkpoint
    its own (meta val). Why: the texture mean and the fused outputs read each GAN member's offset from the pixel-loss
    ensemble, and from other pixel-loss weights that offset carries their difference as texture. Pairs in different
    folders, or without these records (hand-made files), are not checked."""
    for (pixel_path, pixel_meta), (gan_path, gan_meta) in zip(pixel, gan):
        started = ((gan_meta.get("history") or {}).get(Side.PIXEL) or {}).get("psnr")
        own = (pixel_meta.get("val") or {}).get("psnr")
        if (Path(pixel_path).parent == Path(gan_path).parent
                and isinstance(started, (int, float)) and isinstance(own, (int, float))
                and not math.isclose(started, own, rel_tol=0.0, abs_tol=1e-9)):
            raise CheckpointError(f"{gan_path} was trained from another pixel-loss generator than {pixel_path} "
                                  f"(phase-1 validation {started:.4f} dB, that file's {own:.4f}): the texture mean and "
                                  f"fused outputs need GAN and pixel-loss members from one phase 1; use whole runs")
