"""Tiled upscaling: pure tile geometry plus one loop that runs any upscaler tile by tile.

Every tile is read from the LR image with `pad` extra LR pixels of real context on each side (clamped to the image),
upscaled, and the padded margin is cropped off the output before it is pasted. When `pad` is at least the model's
receptive radius, every output pixel a tile keeps sees exactly the LR pixels (and the same image-border zero padding)
it would see untiled, so the tiled result equals the untiled one up to float summation order (tested to 1e-5).
Peak memory is then set by the tile size, not the image size (tests/test_tiling_memory.py).

All geometry is in LR pixels; `scaled(tile, s)` moves the output-side slices to the HR grid.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import torch


class TileableModel(Protocol):
    """What tiling needs of a model: a Generator and an Ensemble both qualify."""

    scale: int

    def __call__(self, lr_img: torch.Tensor) -> torch.Tensor: ...

    def receptive_radius(self) -> int: ...


Slices = tuple[slice, slice]  # (rows, cols)


@dataclass(frozen=True)
class Tile:
    """One tile. `src`: rows/cols of the LR image read, pad included (clamped to the image). `dst`: rows/cols of the
    output region this tile owns (LR grid; the dst regions of a plan partition the image). `crop`: rows/cols of the
    tile's own output that land on `dst` (the pad removed). All in LR pixels until `scaled`."""

    src: Slices
    dst: Slices
    crop: Slices


def _axis(length: int, tile: int, pad: int) -> list[tuple[slice, slice, slice]]:
    """(src, dst, crop) slices along one axis of `length` pixels."""
    spans = []
    for start in range(0, length, tile):
        stop = min(start + tile, length)
        src_start, src_stop = max(start - pad, 0), min(stop + pad, length)
        crop_start = start - src_start  # pad actually read before the owned span (less at the image border)
        spans.append((slice(src_start, src_stop), slice(start, stop),
                      slice(crop_start, crop_start + stop - start)))
    return spans


def plan_tiles(h: int, w: int, *, tile: int, pad: int) -> list[Tile]:
    """Tiles covering an h x w LR image, row-major. `tile` <= 0 means one tile for the whole image.

    Tiles are `tile` x `tile` LR pixels except the last row/column, which take what is left (sizes need not be
    multiples of `tile`).
    """
    if h <= 0 or w <= 0:
        raise ValueError(f"image size must be positive, got {h}x{w}")
    if pad < 0:
        raise ValueError(f"tile pad must be >= 0, got {pad}")
    if tile <= 0:
        tile = max(h, w)
    rows, cols = _axis(h, tile, pad), _axis(w, tile, pad)
    return [Tile(src=(rs, cs), dst=(rd, cd), crop=(rc, cc)) for rs, rd, rc in rows for cs, cd, cc in cols]


def _scale_slice(sl: slice, s: int) -> slice:
    return slice(sl.start * s, sl.stop * s)


def scaled(tile: Tile, s: int) -> Tile:
    """The tile with `dst` and `crop` on the HR grid (x s); `src` stays in LR pixels since it indexes the input."""
    return Tile(src=tile.src,
                dst=(_scale_slice(tile.dst[0], s), _scale_slice(tile.dst[1], s)),
                crop=(_scale_slice(tile.crop[0], s), _scale_slice(tile.crop[1], s)))


def tiled_apply(fn: Callable[[torch.Tensor], tuple[torch.Tensor, ...]], lr_img: torch.Tensor, *, scale: int,
                tile: int, pad: int, on_tile: Callable[[int, int], None] | None = None) -> tuple[torch.Tensor, ...]:
    """Run `fn` tile by tile on (B, C, h, w) and assemble each of its outputs (B, C_i, h*scale, w*scale).

    `fn` returns a tuple of maps on the HR grid (e.g. an ensemble's output and its uncertainty); outputs are
    allocated on first use with the dtype/device `fn` returns. `on_tile(done, total)` is called after each tile
    (progress reporting, e.g. the web page's tiles done / total).
    """
    batch, _, h, w = lr_img.shape
    outputs: list[torch.Tensor] = []
    plan = plan_tiles(h, w, tile=tile, pad=pad)
    for index, t in enumerate(plan):
        t_hr = scaled(t, scale)
        results = fn(lr_img[(..., *t.src)])
        if not outputs:
            outputs = [r.new_empty((batch, r.shape[1], h * scale, w * scale)) for r in results]
        for out, res in zip(outputs, results):
            out[(..., *t_hr.dst)] = res[(..., *t_hr.crop)]
        if on_tile is not None:
            on_tile(index + 1, len(plan))
    return tuple(outputs)


def upscale_tiled(model: TileableModel, lr_img: torch.Tensor, *, tile: int, pad: int | None = None) -> torch.Tensor:
    """model(lr_img) computed tile by tile: (B, 3, h, w) in [0, 1] -> (B, 3, h*s, w*s).

    `tile` in LR pixels (0 = whole image); `pad` defaults to model.receptive_radius(), which makes the result equal
    to the untiled one. A smaller pad saves compute at the price of seams.
    """
    if pad is None:
        pad = model.receptive_radius()
    (out,) = tiled_apply(lambda x: (model(x),), lr_img, scale=model.scale, tile=tile, pad=pad)
    return out
