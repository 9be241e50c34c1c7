"""The Python API: an ensemble (or any generator) plus device, precision and tiling, for tensors and PIL images.

    from mgsrgan import Upscaler
    up = Upscaler.from_run("runs/x4", strategy="mean", checkpoint="best", device="cpu", precision="auto")
    sr = up(Image.open("photo.png"))                 # PIL in, PIL out (mode, alpha, 16-bit kept)
    sr_img = up.upscale_tensor(lr_img)               # (B, 3, h, w) in [0, 1] -> (B, 3, h*s, w*s), clipped

Precision (`precision=` auto|fp32|bf16|fp16, mgsrgan.device.resolve_precision): only the networks' forward passes
run under autocast (`with_precision` wraps each Generator in a `ReducedPrecision`); their outputs come back as float32, so ensemble fusion
(mean/median/consensus, the uncertainty std), self-ensemble averaging, clipping and quantising are float32.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

import torch
from PIL import Image
from torch import nn

from mgsrgan.device import autocast_to, resolve_device, resolve_precision
from mgsrgan.infer.ensemble import (DEFAULT_SHIPPED_SCALE, Ensemble, EnsembleSourceError, build_ensemble,
                                    run_member_paths, shipped_member_paths)
from mgsrgan.infer.fusion import check_fusion
from mgsrgan.io.checkpoint import Side
from mgsrgan.errors import UserError
from mgsrgan.models.generator import Generator
from mgsrgan.io.images import from_pil, to_pil
from mgsrgan.infer.tiling import tiled_apply


def resolve_inference_device(name: str, *, half: bool) -> torch.device:
    """'auto' | 'cpu' | 'cuda' -> torch.device (mgsrgan.device rules); half precision is refused on CPU."""
    device = resolve_device(name)
    if half and device.type != "cuda":
        raise UserError("--half needs a CUDA device (float16 on CPU is slow and inexact); drop --half")
    return device


class ReducedPrecision(nn.Module):
    """`network`'s forward pass under autocast to `dtype` (device.autocast_to), its output cast back to float32. Keeps the network's
    `scale` and `receptive_radius`, so tiling and ensembles treat it as the network itself."""

    def __init__(self, network: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.network = network
        self.dtype = dtype
        self.scale = network.scale

    def receptive_radius(self) -> int:
        return self.network.receptive_radius()

    def forward(self, lr_img: torch.Tensor) -> torch.Tensor:
        with autocast_to(self.dtype, lr_img.device):
            out = self.network(lr_img)
        return out.float()


def with_precision(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """`model` with every Generator inside it (ensemble members, the GAN member, a self-ensemble's generator)
    replaced, in place, by ReducedPrecision(generator, dtype): only the network passes run in `dtype`, and whatever combines
    their outputs (ensemble strategies, the uncertainty std, self-ensemble averaging) runs on float32. A model that
    holds no Generator is wrapped as a whole (an Ensemble's members one by one, so its fusion stays float32).
    float32: `model` itself, untouched."""
    if dtype == torch.float32:
        return model
    if isinstance(model, Ensemble):
        for index, member in enumerate(model.members):
            model.members[index] = with_precision(member, dtype)
        if model.gan_side is not None:
            model.gan_side = with_precision(model.gan_side, dtype)
        return model
    if isinstance(model, Generator) or not any(isinstance(m, Generator) for m in model.modules()):
        return ReducedPrecision(model, dtype)
    wrapped: dict[int, ReducedPrecision] = {}  # one wrapper per generator, even where two parents share it
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, Generator):
                setattr(parent, name, wrapped.setdefault(id(child), ReducedPrecision(child, dtype)))
    return model


def default_run_checkpoint(run: Path) -> str:
    """"best" when every member of `run` has one, else "pretrain" (the pixel-loss end, highest PSNR) when every member
    has that, with a note; "best" otherwise, so the missing-file error names the usual default."""
    try:
        run_member_paths(run, "best")
        return "best"
    except EnsembleSourceError:
        try:
            run_member_paths(run, Side.PIXEL)
        except EnsembleSourceError:
            return "best"
    print(f"note: {run} has no best checkpoints (a run without validation, or shipped weights); using "
          f"{Side.PIXEL}, the end of the pixel-loss phase (--checkpoint to choose)", file=sys.stderr)
    return Side.PIXEL.value


def ensemble_from_source(*, run: Path | None = None, weights: Sequence[Path] | None = None,
                         checkpoint: str | None = None, strategy: str | None = None, alpha: float = 0.0,
                         gan_paths: Path | Sequence[Path] | None = None, gan_index: int | None = None,
                         adaptive_c0: float = 0.0, guided_tau: float = 0.0, self_ensemble: bool = False,
                         scale: int | None = None, real: bool = False) -> Ensemble:
    """Members from a run folder, explicit files, or (neither given) the shipped weights/x<scale> folder.

    `scale` picks the shipped ensemble (default DEFAULT_SHIPPED_SCALE); with a run or files it must be theirs.
    `real` picks the shipped real-photo ensemble of that scale (weights/x<scale>-real); a run or files name their
    own members, so `real` with them is a UserError.

    `checkpoint` defaults to "best" for a run, or "pretrain" (the pixel-loss members) when alpha > 0 or for the
    shipped weights; a run folder without best checkpoints (validation off, or weights/x<s> passed as --run: they
    hold pretrain and gan only) falls back to "pretrain", with a note on stderr. With alpha > 0 the GAN side is
    `gan_paths` (one file or several), else the "gan" checkpoints of every member (their combination), or of member
    `gan_index` alone. adaptive_c0 > 0 / guided_tau > 0: adaptive / guided fusion (fusion.py).
    """
    if run is not None and weights:
        raise UserError("pass either --run or --weights, not both")
    if real and (run is not None or weights):
        raise UserError("--real picks the shipped real-photo model; --run/--weights name their own files: drop one")
    check_fusion(alpha, adaptive_c0, guided_tau)
    if isinstance(gan_paths, (str, Path)):
        gan_paths = [gan_paths]
    gan_paths = [Path(p) for p in gan_paths] if (gan_paths and alpha > 0.0) else []
    if weights:
        if checkpoint is not None:
            raise UserError("--checkpoint selects files inside --run; with --weights name the files directly")
        paths = [Path(p) for p in weights]
        if alpha > 0.0 and not gan_paths:
            raise UserError("--alpha with --weights needs --gan-member PATH [PATH ...] (perception-oriented "
                            "generators)")
    else:
        if checkpoint is None:
            checkpoint = Side.PIXEL.value if (alpha > 0.0 or run is None) else default_run_checkpoint(Path(run))
        shipped_scale = DEFAULT_SHIPPED_SCALE if scale is None else scale
        paths = (run_member_paths(Path(run), checkpoint) if run is not None
                 else shipped_member_paths(checkpoint, shipped_scale, real))
        if alpha > 0.0 and not gan_paths:
            gan_paths = (run_member_paths(Path(run), Side.GAN) if run is not None
                         else shipped_member_paths(Side.GAN, shipped_scale, real))
            if gan_index is not None:
                if not 0 <= gan_index < len(gan_paths):
                    raise UserError(f"--gan-index {gan_index}: there are {len(gan_paths)} members "
                                    f"(0..{len(gan_paths) - 1})")
                gan_paths = [gan_paths[gan_index]]
    model = build_ensemble(paths, strategy=strategy, gan_paths=gan_paths, alpha=alpha, adaptive_c0=adaptive_c0,
                           guided_tau=guided_tau, self_ensemble=self_ensemble)
    if scale is not None and model.scale != scale:
        source = run if run is not None else paths[0]
        raise UserError(f"--scale {scale}, but {source} holds x{model.scale} members; drop --scale or pass "
                        f"--scale {model.scale}")
    return model


class Upscaler:
    """Runs `model` (an Ensemble or a Generator) on `device`, tile by tile when `tile` > 0 (LR pixels).

    `tile_pad` defaults to the model's receptive radius, which makes tiled output equal the untiled one.
    `precision` auto|fp32|bf16|fp16 (mgsrgan.device.resolve_precision: auto = bf16 on CUDA cards and CPUs with
    native bf16, else fp32/fp16) is the dtype of the network passes only (see `with_precision`); `half` is an alias
    of precision="fp16" (CUDA only). `self.dtype` is the resolved autocast dtype. Outputs are float32, clipped to
    [0, 1]. fp32 computes exactly what the model alone computes.
    """

    def __init__(self, model: nn.Module, *, device: str = "cpu", tile: int = 0, tile_pad: int | None = None,
                 half: bool = False, precision: str = "auto") -> None:
        if tile < 0 or (tile_pad is not None and tile_pad < 0):
            raise UserError(f"tile ({tile}) and tile pad ({tile_pad}) must be >= 0")
        self.device = resolve_inference_device(device, half=half)
        if half:
            if precision not in ("auto", "fp16"):
                raise UserError(f"--half means --precision fp16; it contradicts --precision {precision}")
            precision = "fp16"
        self.dtype = resolve_precision(precision, self.device)
        # NHWC: oneDNN's and cuDNN's fast convolution layout. Weights stay float32; autocast casts them per pass.
        self.model = with_precision(model.eval().to(self.device).to(memory_format=torch.channels_last), self.dtype)
        self.scale: int = model.scale
        self.tile = tile
        self.tile_pad = model.receptive_radius() if tile_pad is None else tile_pad

    @classmethod
    def from_run(cls, run: Path, strategy: str | None = None, checkpoint: str | None = None, device: str = "cpu", *,
                 alpha: float = 0.0, gan_index: int | None = None, adaptive_c0: float = 0.0,
                 guided_tau: float = 0.0, self_ensemble: bool = False, precision: str = "auto",
                 **options) -> "Upscaler":
        """All members of a run folder (`checkpoint` of each: default best, or pretrain where there is none; alpha > 0
        blends in the mean of the members' GAN checkpoints, or member `gan_index`'s alone; adaptive_c0 or
        guided_tau > 0: per-pixel fusion (fusion.py); self_ensemble: each generator on the 8 flips/rotations, 8x the
        time)."""
        if alpha > 0.0 and checkpoint == "best":
            checkpoint = Side.PIXEL.value  # the pixel-loss side of the knob (see ensemble_from_source)
        model = ensemble_from_source(run=Path(run), checkpoint=checkpoint, strategy=strategy, alpha=alpha,
                                     gan_index=gan_index, adaptive_c0=adaptive_c0, guided_tau=guided_tau,
                                     self_ensemble=self_ensemble)
        return cls(model, device=device, precision=precision, **options)

    @classmethod
    def from_weights(cls, paths: Sequence[Path], strategy: str | None = None, device: str = "cpu", *,
                     alpha: float = 0.0, gan_paths: Path | Sequence[Path] | None = None,
                     adaptive_c0: float = 0.0, guided_tau: float = 0.0, self_ensemble: bool = False,
                     precision: str = "auto", **options) -> "Upscaler":
        """Members from explicit checkpoint files (gan_paths: one or several GAN checkpoints for alpha > 0)."""
        model = ensemble_from_source(weights=[Path(p) for p in paths], strategy=strategy, alpha=alpha,
                                     gan_paths=gan_paths, adaptive_c0=adaptive_c0, guided_tau=guided_tau,
                                     self_ensemble=self_ensemble)
        return cls(model, device=device, precision=precision, **options)

    @classmethod
    def pretrained(cls, strategy: str | None = None, device: str = "cpu", *, scale: int = DEFAULT_SHIPPED_SCALE,
                   checkpoint: str = Side.PIXEL.value, alpha: float = 0.0, adaptive_c0: float = 0.0,
                   guided_tau: float = 0.0, self_ensemble: bool = False, precision: str = "auto",
                   real: bool = False, **options) -> "Upscaler":
        """The ensemble shipped for `scale` (2 or 4: weights/x<scale>, found by ensemble.shipped_root in the
        checkout's weights/ or $MGSRGAN_WEIGHTS): `checkpoint` "pretrain" (pixel loss) or "gan" of every member;
        alpha > 0 (with pretrain) blends in the GAN members, per pixel when adaptive_c0 or guided_tau > 0.
        real=True: the real-photo ensemble (weights/x<scale>-real), for phone and web photos (JPEG, noise, blur);
        the default is for clean downscaled images."""
        model = ensemble_from_source(checkpoint=checkpoint, strategy=strategy, alpha=alpha, scale=scale,
                                     adaptive_c0=adaptive_c0, guided_tau=guided_tau,
                                     self_ensemble=self_ensemble, real=real)
        return cls(model, device=device, precision=precision, **options)

    def _run(self, lr_img: torch.Tensor, with_uncertainty: bool) -> tuple[torch.Tensor, ...]:
        squeeze = lr_img.dim() == 3
        batch = lr_img[None] if squeeze else lr_img
        if batch.dim() != 4 or batch.shape[1] != 3:
            raise UserError(f"expected a (B, 3, h, w) or (3, h, w) tensor, got shape {tuple(lr_img.shape)}")
        if with_uncertainty and not hasattr(self.model, "forward_with_uncertainty"):
            raise UserError("uncertainty maps need an Ensemble model")
        run = self.model.forward_with_uncertainty if with_uncertainty else (lambda x: (self.model(x),))

        def fn(tile: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return run(tile.contiguous(memory_format=torch.channels_last))
        with torch.no_grad():  # not inference_mode: callers may modify the returned tensors in place
            results = tiled_apply(fn, batch.to(self.device, torch.float32), scale=self.scale, tile=self.tile,
                                  pad=self.tile_pad)  # float32 maps: with_precision casts every network output
            results[0].clamp_(0.0, 1.0)  # our own fresh output: in place saves a full-size copy
            results = tuple(r.to(lr_img.device, torch.float32) for r in results)
        return tuple(r[0] for r in results) if squeeze else results

    def upscale_tensor(self, lr_img: torch.Tensor) -> torch.Tensor:
        """(B, 3, h, w) or (3, h, w) float in [0, 1] -> the same layout upscaled, float32 in [0, 1]."""
        return self._run(lr_img, with_uncertainty=False)[0]

    def upscale_with_uncertainty(self, lr_img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(sr, std): std (B, 1, H, W) is the per-pixel member std averaged over channels (image units)."""
        sr_img, std = self._run(lr_img, with_uncertainty=True)
        return sr_img, std

    def __call__(self, image: Image.Image) -> Image.Image:
        """Upscale a PIL image, keeping its kind: RGBA keeps (bicubic-upscaled) alpha, L stays L, 16-bit stays
        16-bit, P and CMYK come back as RGB(A); EXIF orientation is applied."""
        lr_img, info = from_pil(image)
        return to_pil(self.upscale_tensor(lr_img), info)
