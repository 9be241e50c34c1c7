"""What the server holds in memory: per scale (and clean or real-photo), the pixel-loss and GAN members, loaded
once; and running them.

The members run once per image; every strategy, the alpha knob, adaptive fusion, single members and the
uncertainty map are then computed from their cached outputs (`compose.py`), which is what lets the page re-render
without running a network again.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from mgsrgan.device import resolve_device, resolve_precision
from mgsrgan.errors import UserError
from mgsrgan.infer.ensemble import (REAL_SUFFIX, SHIPPED_SCALES, EnsembleSourceError, alex_scores, load_members,
                                    one_if_identical, psnr_scores, run_member_paths, shipped_dir,
                                    shipped_member_paths)
from mgsrgan.infer.self_ensemble import SelfEnsemble
from mgsrgan.infer.tiling import tiled_apply
from mgsrgan.infer.upscaler import with_precision
from mgsrgan.io.checkpoint import Side

DEFAULT_TILE = 192  # LR pixels per tile: the page's progress moves in steps of a few hundred ms, and a 2 MP input
#                     needs ~1 GB of activations at most instead of ~4 (tiling is exact: infer/tiling.py)


@dataclass(frozen=True)
class SideMembers:
    """One side's members: generators (BatchNorm folded, eval, on the bank's device, network passes in its
    precision) and each member's validation scores from its checkpoint metadata (None where any lacks one)."""

    generators: tuple[nn.Module, ...]
    val_psnr: tuple[float, ...] | None
    val_alex: tuple[float, ...] | None

    def describe(self) -> dict:
        return {"members": len(self.generators),
                "val_psnr_db": list(self.val_psnr) if self.val_psnr else None,
                "val_stlpips_alex": list(self.val_alex) if self.val_alex else None}


@dataclass(frozen=True)
class Bank:
    """The ensemble of one scale: sides[Side.PIXEL] always, sides[Side.GAN] where the source has gan checkpoints;
    `real`: the real-photo ensemble of that scale (weights/x<scale>-real: JPEG, noise, blur)."""

    scale: int
    source: str  # shown to clients: "shipped weights/x2" or the run folder's name (never a full server path)
    sides: dict[Side, SideMembers]
    tile: int
    real: bool = False

    @property
    def key(self) -> tuple[int, bool]:
        """(scale, real): how the server finds this bank."""
        return self.scale, self.real

    def run(self, lr_img: torch.Tensor, sides: Sequence[Side], *, self_ensemble: bool = False,
            on_tile: Callable[[int, int], None] | None = None) -> dict[str, torch.Tensor]:
        """(3, h, w) float in [0, 1] -> {side: (K, 3, h*s, w*s) float32 member outputs, unclipped} for each side
        asked for; every member runs tile by tile (exact), `on_tile(done, total)` after each tile."""
        for side in sides:
            if side not in self.sides:
                raise UserError(f"checkpoint {side!r}: this x{self.scale} ensemble has none "
                                f"(it has {', '.join(self.sides)})")
        members: list[nn.Module] = [g for side in sides for g in self.sides[side].generators]
        if self_ensemble:
            members = [SelfEnsemble(g) for g in members]
        pad = max(g.receptive_radius() for g in members)
        device = next(iter(self.sides[Side.PIXEL].generators[0].parameters())).device

        def fn(tile: torch.Tensor) -> tuple[torch.Tensor, ...]:
            tile = tile.contiguous(memory_format=torch.channels_last)
            return tuple(member(tile) for member in members)
        with torch.no_grad():
            outputs = tiled_apply(fn, lr_img[None].to(device, torch.float32), scale=self.scale, tile=self.tile,
                                  pad=pad, on_tile=on_tile)
        result, start = {}, 0
        for side in sides:
            count = len(self.sides[side].generators)
            result[side] = torch.cat(outputs[start:start + count]).float().cpu()
            start += count
        return result

    def describe(self) -> dict:
        return {"scale": self.scale, "real": self.real, "source": self.source,
                "checkpoints": [side.value for side in self.sides],
                **{side.value: self.sides[side].describe() for side in self.sides}}


def _load_side(paths: Sequence[Path], device: torch.device, dtype: torch.dtype) -> SideMembers:
    loaded = load_members(one_if_identical(paths))
    generators = tuple(with_precision(g.to(device).to(memory_format=torch.channels_last).eval(), dtype)
                       for g, _ in loaded)
    metas = [meta for _, meta in loaded]
    psnr, alex = psnr_scores(metas), alex_scores(metas)
    return SideMembers(generators, tuple(psnr) if psnr else None, tuple(alex) if alex else None)


def load_bank(*, scale: int, run: Path | None = None, device: str = "auto", precision: str = "auto",
              tile: int = DEFAULT_TILE, real: bool = False) -> Bank:
    """The shipped weights/x<scale> ensemble (weights/x<scale>-real when `real`), or every member of `run`
    (pretrain checkpoints, gan ones where all members have them), ready to run. UserError when the members are
    missing or not x`scale`."""
    torch_device = resolve_device(device)
    dtype = resolve_precision(precision, torch_device)
    if run is None:
        if scale not in SHIPPED_SCALES:
            raise UserError(f"--scale {scale}: the shipped ensembles are x{' and x'.join(map(str, SHIPPED_SCALES))}")
        pixel_paths = shipped_member_paths(Side.PIXEL, scale, real)
        source = f"shipped weights/x{scale}{REAL_SUFFIX if real else ''}"
    elif real:
        raise UserError("a real-photo ensemble is a shipped one (weights/x<scale>-real), not a run's")
    else:
        pixel_paths, source = run_member_paths(Path(run), Side.PIXEL), Path(run).name
    sides = {Side.PIXEL: _load_side(pixel_paths, torch_device, dtype)}
    try:
        gan_paths = (shipped_member_paths(Side.GAN, scale, real) if run is None
                     else run_member_paths(Path(run), Side.GAN))
    except EnsembleSourceError:
        gan_paths = []  # a run stopped before its adversarial phase: the pixel-loss side only
    if gan_paths:
        sides[Side.GAN] = _load_side(gan_paths, torch_device, dtype)
    found = sides[Side.PIXEL].generators[0].scale
    if found != scale:
        raise UserError(f"--scale {scale}, but {source} holds x{found} members")
    return Bank(scale=scale, source=source, sides=sides, tile=tile, real=real)


def load_banks(scales: Sequence[int], *, run: Path | None = None, device: str = "auto", precision: str = "auto",
               tile: int = DEFAULT_TILE) -> list[Bank]:
    """One bank per scale (load_bank), then, for the shipped weights, the real-photo bank of each scale whose
    weights/x<scale>-real folder exists (skipped silently where it does not: none is shipped yet)."""
    banks = [load_bank(scale=s, run=run, device=device, precision=precision, tile=tile) for s in scales]
    if run is None:
        banks += [load_bank(scale=s, device=device, precision=precision, tile=tile, real=True)
                  for s in scales if shipped_dir(s, real=True).is_dir()]
    return banks
