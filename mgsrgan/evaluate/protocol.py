"""Evaluate upscalers on folders of HR images under the standard SR protocol (PROTOCOL.md).

For every HR image: crop to a multiple of the scale (`modcrop`), make the LR with antialiased bicubic
(`bicubic_downscale`), upscale it with each model, clip/round to 8 bits, score PSNR and SSIM on Y with
`crop_border = scale`. Grayscale images are scored on raw gray values: bicubic works on them directly, networks
see three equal channels and their output returns to gray through Pillow's luma.

Optional perceptual columns (lower is better): ST-LPIPS with its AlexNet and its VGG16 trunk (mgsrgan.evaluate.stlpips;
fields stlpips_alex, stlpips) and LPIPS (mgsrgan.evaluate.lpips), each a
`PairDistance` on the 8-bit RGB SR and HR after modcrop with the same `scale` border pixels cropped as for PSNR (the
border is where the networks see zero padding and the bicubic baseline clamps; every row is scored on the same
pixels). Gray images are scored as three equal channels (the networks were trained on RGB).

Every model is a `Uint8Upscale`: (h, w, 3) RGB or (h, w) gray uint8 LR -> the same layout at x scale. Networks
that work on tensors (a `TensorUpscale`: a generator, an ensemble, a tiled wrapper) are adapted with
`tensor_upscaler`, so the loop never needs to know what is behind a name.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn

from mgsrgan.evaluate.artifacts import colour_shift, periodic_artifact
from mgsrgan.io.degradation import bicubic_downscale, bicubic_upscale, modcrop
from mgsrgan.io.photo_degradation import FixedStep, apply_fixed
from mgsrgan.infer.ensemble import (Ensemble, alex_scores, load_members, one_if_identical, pixel_siblings,
                                    psnr_scores, run_member_paths, scores_for, supported_strategies)
from mgsrgan.errors import UserError
from mgsrgan.evaluate.metrics import PEAK, psnr, ssim, tensor_to_uint8
from mgsrgan.infer.self_ensemble import SUFFIX as SELF_ENSEMBLE_SUFFIX
from mgsrgan.infer.self_ensemble import SelfEnsemble
from mgsrgan.infer.tiling import upscale_tiled
from mgsrgan.infer.upscaler import with_precision
from mgsrgan.io import images
from mgsrgan.io.images import IMAGE_EXTENSIONS, BadImageError

Uint8Upscale = Callable[[np.ndarray], np.ndarray]  # uint8 LR (h, w[, 3]) -> uint8 SR (h*s, w*s[, 3])
TensorUpscale = Callable[[torch.Tensor], torch.Tensor]  # (1, 3, h, w) in [0, 1] -> (1, 3, h*s, w*s), ~[0, 1]
PairDistance = Callable[[np.ndarray, np.ndarray], float]  # (H, W, 3) uint8 SR, HR -> distance >= 0, lower = closer

BICUBIC = "bicubic"  # the model name of the baseline every SR paper reports
HIGH_BIT_MODES = ("I;16", "RGB;16", "RGBA;16")  # ImageInfo modes with more than 8 bits per sample (mgsrgan.io.images)
# ImageScore field -> column header, in column order: ST-LPIPS with the AlexNet trunk first (the headline column),
# then the VGG16 one (mgsrgan.evaluate.stlpips, net="alex" / "vgg"), then LPIPS
ARTIFACTS = ("artifact", "artifact_hr", "shift_r", "shift_g", "shift_b")  # ImageScore fields from artifacts.py
PERCEPTUAL = {"stlpips_alex": "ST-LPIPS-Alex", "stlpips": "ST-LPIPS", "lpips": "LPIPS"}


class EvaluationError(UserError):
    """A data folder or image the evaluator cannot use."""


@dataclass(frozen=True)
class ImageScore:
    """One model on one image. psnr in dB (inf if SR == HR after cropping), ssim in [-1, 1], seconds of upscaling
    (scoring excluded); stlpips (VGG16 trunk) / lpips / stlpips_alex (AlexNet trunk): perceptual distances (>= 0,
    lower is better), None when not computed."""
    dataset: str
    image: str
    model: str
    psnr: float
    ssim: float
    seconds: float
    stlpips: float | None = None
    lpips: float | None = None
    stlpips_alex: float | None = None  # last, so positional construction of the fields above is unchanged
    # mgsrgan/evaluate/artifacts.py, 8-bit levels: grid-locked pattern amplitude of SR and of HR itself, SR - HR mean per channel
    artifact: float | None = None
    artifact_hr: float | None = None
    shift_r: float | None = None
    shift_g: float | None = None
    shift_b: float | None = None


def benchmark_images(folder: Path) -> list[Path]:
    """The images directly inside a benchmark folder (`mgsrgan.io.images.list_images`); EvaluationError if the folder
    is missing or holds no image."""
    if not Path(folder).is_dir():
        raise EvaluationError(f"{folder}: no such data folder")
    paths = images.list_images(folder)
    if not paths:
        raise EvaluationError(f"{folder}: no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) in this folder")
    return paths


def load_hr(path: Path) -> np.ndarray:
    """An HR image as uint8: (H, W) for 8-bit gray files, (H, W, 3) RGB for everything else (alpha dropped), decoded
    by `mgsrgan.io.images.read_rgb8` (upright by EXIF, as training and inference see it)."""
    try:
        rgb, info = images.read_rgb8(path)
    except BadImageError as err:
        raise EvaluationError(str(err)) from None
    if info.mode in HIGH_BIT_MODES:
        raise EvaluationError(f"{path}: {info.mode} images (more than 8 bits) are not supported by the 8-bit PSNR/SSIM "
                              "protocol")
    return np.ascontiguousarray(rgb[..., 0]) if info.mode in ("L", "LA") else rgb


def gray_to_rgb(img: np.ndarray) -> np.ndarray:
    """(h, w) uint8 -> (h, w, 3) uint8 with three equal channels (how a gray image enters an RGB network)."""
    return np.repeat(img[..., None], 3, axis=2)


def rgb_to_gray(img: np.ndarray) -> np.ndarray:
    """(h, w, 3) uint8 -> (h, w) uint8 with Pillow's convert("L") (BT.601 luma, 0.299 R + 0.587 G + 0.114 B).

    The same conversion mgsrgan.io.images applies when it writes a gray image's output, so the scored pixels are the
    ones a user gets; three equal channels g map back to g exactly.
    """
    return np.asarray(Image.fromarray(img).convert("L"))


def bicubic_upscaler(scale: int) -> Uint8Upscale:
    """The PIL bicubic baseline; works on gray and RGB directly."""
    return lambda lr_img: bicubic_upscale(lr_img, scale)


def tensor_upscaler(upscale: TensorUpscale, *, device: torch.device | str = "cpu") -> Uint8Upscale:
    """Adapt a tensor model to an Uint8Upscale: uint8 -> [0, 1] float on `device`, no_grad, clip/round to uint8.

    Gray LR enters as three equal channels and the RGB output is turned back to gray with `rgb_to_gray`.
    The caller puts its modules in eval mode (BatchNorm must use running statistics) and sets their precision
    (mgsrgan.infer.upscaler.with_precision, as load_run_models does).
    """
    def run(lr_img: np.ndarray) -> np.ndarray:
        rgb = gray_to_rgb(lr_img) if lr_img.ndim == 2 else lr_img
        lr = torch.from_numpy(rgb.copy()).permute(2, 0, 1).unsqueeze(0)
        lr = lr.to(device=device, dtype=torch.float32) / PEAK  # (1, 3, h, w) in [0, 1]
        with torch.no_grad():
            sr = upscale(lr)  # (1, 3, h*s, w*s)
        sr_img = tensor_to_uint8(sr)
        return rgb_to_gray(sr_img) if lr_img.ndim == 2 else sr_img
    return run


def perceptual_scores(sr_img: np.ndarray, hr_img: np.ndarray, metrics: dict[str, PairDistance], *,
                      crop_border: int) -> dict[str, float]:
    """Each metric (keys from PERCEPTUAL) on uint8 SR vs HR, (H, W, 3) or gray (H, W) -> three equal channels,
    after cropping `crop_border` pixels from every side."""
    unknown = set(metrics) - set(PERCEPTUAL)
    if unknown:
        raise ValueError(f"unknown perceptual metrics {sorted(unknown)}; expected some of {list(PERCEPTUAL)}")
    if crop_border:
        sr_img = sr_img[crop_border:-crop_border, crop_border:-crop_border]
        hr_img = hr_img[crop_border:-crop_border, crop_border:-crop_border]
    if hr_img.ndim == 2:
        sr_img, hr_img = gray_to_rgb(sr_img), gray_to_rgb(hr_img)
    sr_img, hr_img = np.ascontiguousarray(sr_img), np.ascontiguousarray(hr_img)
    return {name: float(distance(sr_img, hr_img)) for name, distance in metrics.items()}


def artifact_scores(sr_img: np.ndarray, hr_img: np.ndarray, *, scale: int) -> dict[str, float]:
    """Periodic-artifact amplitude of SR and HR and the colour shift (mgsrgan/evaluate/artifacts.py), crop `scale`; uint8
    (H, W, 3) or gray (H, W) images (as three equal channels)."""
    if hr_img.ndim == 2:
        sr_img, hr_img = gray_to_rgb(sr_img), gray_to_rgb(hr_img)
    r, g, b = colour_shift(sr_img, hr_img, crop_border=scale)
    return {"artifact": periodic_artifact(sr_img, scale, crop_border=scale),
            "artifact_hr": periodic_artifact(hr_img, scale, crop_border=scale), "shift_r": r, "shift_g": g,
            "shift_b": b}


def protocol_lr(hr_img: np.ndarray, scale: int, degrade: Sequence[FixedStep] = (), seed: int = 0) -> np.ndarray:
    """The LR every model sees: the bicubic downscale of the modcropped HR, then the fixed degradation steps
    (`--degrade noise:5,jpeg:50`, the noise drawn from `seed`) when given. Gray stays gray: the steps run on its
    three equal channels and the first is kept."""
    lr_img = bicubic_downscale(hr_img, scale)
    if not degrade:
        return lr_img
    if lr_img.ndim == 2:
        return apply_fixed(np.repeat(lr_img[..., None], 3, axis=2), list(degrade), seed)[..., 0].copy()
    return apply_fixed(lr_img, list(degrade), seed)


def evaluate_image(hr_img: np.ndarray, upscalers: dict[str, Uint8Upscale], *, scale: int,
                   perceptual: dict[str, PairDistance] | None = None, degrade: Sequence[FixedStep] = (),
                   seed: int = 0) -> dict[str, dict[str, float]]:
    """Score every upscaler on one HR image: model name -> {"psnr" dB, "ssim", "seconds", and one entry per
    perceptual metric}. HR is modcropped here; `seconds` times the upscaling only. LR: `protocol_lr`."""
    hr_img = modcrop(hr_img, scale)
    lr_img = protocol_lr(hr_img, scale, degrade, seed)
    scores = {}
    for name, upscale in upscalers.items():
        start = time.perf_counter()
        sr_img = upscale(lr_img)
        seconds = time.perf_counter() - start
        if sr_img.shape != hr_img.shape or sr_img.dtype != np.uint8:
            raise ValueError(f"model {name} returned {sr_img.dtype} {sr_img.shape}, expected uint8 {hr_img.shape}")
        scores[name] = {"psnr": psnr(sr_img, hr_img, crop_border=scale),
                        "ssim": ssim(sr_img, hr_img, crop_border=scale), "seconds": seconds,
                        **artifact_scores(sr_img, hr_img, scale=scale),
                        **perceptual_scores(sr_img, hr_img, perceptual or {}, crop_border=scale)}
    return scores


def evaluate_folder(folder: Path, upscalers: dict[str, Uint8Upscale], *, scale: int,
                    on_image: Callable[[str], None] | None = None,
                    perceptual: dict[str, PairDistance] | None = None,
                    degrade: Sequence[FixedStep] = ()) -> list[ImageScore]:
    """Every image of `folder` through every upscaler (and every perceptual metric). The dataset name is the
    folder name. `degrade`: fixed steps after the bicubic downscale, image i's noise drawn from seed i.

    on_image(name) is called before each image (progress display); it has no effect on the scores. A metric that
    rejects an image (e.g. smaller than its network's minimum) raises EvaluationError naming the file.
    """
    folder = Path(folder)
    results = []
    for index, path in enumerate(benchmark_images(folder)):
        if on_image is not None:
            on_image(path.name)
        try:
            scores = evaluate_image(load_hr(path), upscalers, scale=scale, perceptual=perceptual, degrade=degrade,
                                    seed=index)
        except EvaluationError:
            raise
        except UserError as err:  # a metric's own complaint (STLPIPSError, LPIPSError): say which image
            raise EvaluationError(f"{path}: {err}") from None
        results.extend(ImageScore(folder.name, path.stem, name, **values) for name, values in scores.items())
    return results


def summarize(results: Iterable[ImageScore]) -> dict[str, dict[str, dict[str, float]]]:
    """dataset -> model -> {"psnr", "ssim", "seconds", and each PERCEPTUAL key where every image has it: means
    over images; "images": count}; insertion order kept."""
    grouped: dict[str, dict[str, list[ImageScore]]] = {}
    for score in results:
        grouped.setdefault(score.dataset, {}).setdefault(score.model, []).append(score)
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for dataset, models in grouped.items():
        for model, scores in models.items():
            row = {key: float(np.mean([getattr(s, key) for s in scores])) for key in ("psnr", "ssim", "seconds")}
            row.update({key: float(np.mean([getattr(s, key) for s in scores])) for key in (*PERCEPTUAL, *ARTIFACTS)
                        if all(getattr(s, key) is not None for s in scores)})
            summary.setdefault(dataset, {})[model] = {**row, "images": len(scores)}
    return summary


def markdown_table(dataset: str, models: dict[str, dict[str, float]], *, scale: int) -> str:
    """One set's summary (from `summarize`) as a Markdown table, with the gain over bicubic when it was run and a
    column per perceptual metric every row has."""
    base = models.get(BICUBIC)
    extra = [key for key in PERCEPTUAL if all(key in row for row in models.values())]
    artifacts = all(all(key in row for key in ARTIFACTS) for row in models.values())
    note = f"; {', '.join(PERCEPTUAL[k] for k in extra)} on RGB, crop {scale}, lower is better" if extra else ""
    lines = [f"### {dataset} x{scale} (PSNR/SSIM on Y, crop {scale}, PIL bicubic LR{note})", "",
             "| model | PSNR (dB) | SSIM | " + "".join(f"{PERCEPTUAL[k]} | " for k in extra)
             + "vs bicubic (dB) | " + ("artifact (HR) | shift R / G / B | " if artifacts else "") + "s / image |",
             "| --- | ---: | ---: | " + "---: | " * len(extra) + "---: | " + ("---: | ---: | " if artifacts else "")
             + "---: |"]
    for name, row in models.items():
        gain = f"{row['psnr'] - base['psnr']:+.2f}" if base is not None else "n/a"
        art = (f"{row['artifact']:.3f} ({row['artifact_hr']:.3f}) | {row['shift_r']:+.2f} / {row['shift_g']:+.2f} / "
               f"{row['shift_b']:+.2f} | ") if artifacts else ""
        lines.append(f"| {name} | {row['psnr']:.2f} | {row['ssim']:.4f} | "
                     + "".join(f"{row[k]:.4f} | " for k in extra) + f"{gain} | {art}{row['seconds']:.3f} |")
    return "\n".join(lines)


# ---- the models of a training run --------------------------------------------------------------------------------

class SharedMember(nn.Module):
    """A generator that remembers its output for the latest LR input, so a member's pass is computed once per
    image and reused by its own row and by every ensemble strategy (K passes per image instead of K x rows).

    forward: (1, 3, h, w) in [0, 1] -> (1, 3, h*s, w*s); tile > 0 runs the generator tile by tile (LR pixels,
    pad = its receptive radius, so the output equals the untiled one) to bound memory on large images.
    Call under no_grad (the remembered output holds no graph).
    """

    def __init__(self, generator: nn.Module, *, tile: int = 0) -> None:
        super().__init__()
        self.generator = generator
        self.scale = generator.scale
        self.tile = tile
        self._input: torch.Tensor | None = None
        self._output: torch.Tensor | None = None

    def receptive_radius(self) -> int:
        return self.generator.receptive_radius()

    def forward(self, lr_img: torch.Tensor) -> torch.Tensor:
        seen = self._input
        if seen is not None and seen.shape == lr_img.shape and seen.device == lr_img.device \
                and torch.equal(seen, lr_img):
            return self._output
        if self.tile > 0:
            out = upscale_tiled(self.generator, lr_img, tile=self.tile)
        else:
            out = self.generator(lr_img)
        self._input, self._output = lr_img.clone(), out
        return out


@dataclass(frozen=True)
class RunModels:
    """What `load_run_models` found: the run's scale, Uint8Upscales by row name (members first, then ensembles,
    in the order they must run), each ensemble row's member rows (see `charge_shared_passes`), and per-member
    checkpoint facts for the report."""
    scale: int
    upscalers: dict[str, Uint8Upscale]
    uses: dict[str, list[str]]
    members: list[dict]


def default_strategies(metas: list[dict], has_pixel_siblings: bool = False) -> list[str]:
    """Every strategy the checkpoints support (`supported_strategies`): the rows evaluate.py adds by default."""
    return supported_strategies(has_psnr=psnr_scores(metas) is not None, scored=alex_scores(metas) is not None,
                                has_reference=has_pixel_siblings)


def load_run_models(run: Path, *, checkpoint: str, strategies: list[str] | None, device: torch.device | str,
                    tile: int = 0, self_ensemble: bool = False, precision: torch.dtype = torch.float32) -> RunModels:
    """Rows `member_<k>` (each member alone) and `ensemble-<strategy>` for RUN/member_<k>/<checkpoint>.safetensors.

    strategies None = `default_strategies`; a one-member run gets no ensemble rows (they would repeat the member).
    self_ensemble: every member runs on the 8 flips/rotations (mgsrgan/infer/self_ensemble.py); row names end in "+x8".
    precision: autocast dtype of the generator passes (mgsrgan.infer.upscaler.with_precision); the shared member outputs
    are float32, so strategies and quantising are float32.
    UserError for a missing run, no members, a missing checkpoint, mismatched members, or weighted/best without
    validation PSNRs.
    """
    paths = one_if_identical(run_member_paths(Path(run), checkpoint))  # K copies of one network: one row, one pass
    loaded = load_members(paths)
    metas = [meta for _, meta in loaded]
    suffix = SELF_ENSEMBLE_SUFFIX if self_ensemble else ""
    names = [path.parent.name + suffix for path in paths]  # member_<k>, as on disk
    generators = [SelfEnsemble(g) if self_ensemble else g for g, _ in loaded]
    shared = [SharedMember(with_precision(generator.to(device).eval(), precision), tile=tile)
              for generator in generators]
    upscalers: dict[str, Uint8Upscale] = {n: tensor_upscaler(m, device=device) for n, m in zip(names, shared)}
    uses: dict[str, list[str]] = {}
    siblings = pixel_siblings(paths)
    chosen = default_strategies(metas, siblings is not None) if strategies is None else list(strategies)
    reference = None
    if "texture" in chosen and len(shared) > 1:
        if siblings is None:
            raise UserError(f"strategy 'texture' needs GAN members with their pretrain checkpoints beside them; "
                            f"{run} --checkpoint {checkpoint} has none")
        pixel = [SelfEnsemble(g) if self_ensemble else g for g, _ in load_members(one_if_identical(siblings))]
        reference = Ensemble([SharedMember(with_precision(g.to(device).eval(), precision), tile=tile)
                              for g in pixel]).eval()
    for strategy in chosen if len(shared) > 1 else []:
        val_psnr, val_alex = scores_for(strategy, paths, metas)
        ensemble = Ensemble(shared, strategy=strategy, val_psnr=val_psnr, val_alex=val_alex,
                            reference=reference if strategy == "texture" else None).eval()
        name = f"ensemble-{strategy}{suffix}"
        upscalers[name] = tensor_upscaler(ensemble, device=device)
        uses[name] = [names[ensemble.best_index]] if strategy == "best" else list(names)
    members = [{"name": n, "path": str(p), "phase": m.get("phase"), "step": m.get("step"), "val": m.get("val"),
                "arch": m["arch"]} for n, p, m in zip(names, paths, metas)]
    return RunModels(scale=loaded[0][0].scale, upscalers=upscalers, uses=uses, members=members)


def charge_shared_passes(results: list[ImageScore], uses: dict[str, list[str]]) -> list[ImageScore]:
    """Add to each ensemble row, per image, the seconds of the member passes it reused (SharedMember), so its
    `seconds` is what running that ensemble alone would cost. Member rows must be among `results`."""
    own = {(r.dataset, r.image, r.model): r.seconds for r in results}
    return [replace(r, seconds=r.seconds + sum(own[(r.dataset, r.image, m)] for m in uses[r.model]))
            if r.model in uses else r for r in results]
