"""K generators -> one nn.Module with the generator's call signature, so tiling, evaluation and export never ask K.

Strategies (how K member outputs (K, B, 3, H, W) become one image):
  mean       plain average.
  median     per-pixel, per-channel median (mean of the two middle values for even K).
  weighted   fixed weights from each member's validation PSNR, w_k proportional to 10^(psnr_k / 10) = 1 / MSE_k:
             the minimum-variance linear combination of unbiased estimators with independent errors. It has no free
             temperature (a softmax would) and stays close to the mean when members are close.
  perceptual fixed weights 1 / d_k from each member's held-out ST-LPIPS-Alex distance d_k (GAN members).
  best       the single member with the best validation PSNR.
  consensus  per-pixel inverse-variance weighting against the ensemble's own median: each member's squared
             deviation from the per-pixel median, averaged over a (2r+1)^2 window of the output, estimates its local
             error variance; weights are 1 / (that + floor). Needs no validation scores, trusts every member equally
             where they agree, and down-weights a member where (and only where) it strays, e.g. a local artefact
             (tests/test_ensemble.py compares it with the mean and the median on one and on no outlier).
  texture    the GAN members' perceptual-weights mean with the texture that averaging removes restored, measured
             around the pixel-loss ensemble's output (fusion.texture_mean).

`default_strategy` picks one when none is asked; `member_weights` turns scores into weights for every strategy.

Perception-distortion knob (Blau & Michaeli, CVPR 2018): with a GAN side (one GAN generator, or an Ensemble of
several) and alpha in [0, 1], the output is P + alpha * (G - P), P = strategy(pixel-loss members), G = the GAN
side's output. Global: one alpha for every pixel.

Per-pixel fusions (mgsrgan/infer/fusion.py): `adaptive_c0` > 0 steers the GAN share by how alike the GAN members'
texture is (needs several GAN members), `guided_tau` > 0 by the pixel-loss members' disagreement (needs several).
`fusion.check_fusion` is the one check of alpha, adaptive_c0 and guided_tau.
"""
from __future__ import annotations

import hashlib

import math
import os
import re
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from mgsrgan.io.checkpoint import (CHECKPOINT_NAMES, CheckpointError, GeneratorArch, Side,
                                   check_gan_started_from_pixel, load_generator)
from mgsrgan.errors import UserError
from mgsrgan.models.fuse import fold_batchnorm
from mgsrgan.infer.fusion import (CONSENSUS_RADIUS, adaptive_blend, check_fusion, guided_blend, local_mean,
                                  member_spread, texture_mean)
from mgsrgan.infer.self_ensemble import SelfEnsemble, symmetry_outputs

STRATEGIES = ("mean", "median", "weighted", "perceptual", "best", "consensus", "texture")
VARIANCE_FLOOR = (1.0 / 255.0) ** 2 / 12.0  # variance of 8-bit quantisation: agreement finer than the output can
#                                             store carries no information, so no member gets more weight for it
WEIGHTS_ENV = "MGSRGAN_WEIGHTS"  # a folder holding x2/, x4/: where the shipped ensembles are, when set
SHIPPED_SCALES = (2, 4)  # the ensembles shipped in the repo
REAL_SUFFIX = "-real"  # x<s>-real/: the real-photo ensemble of scale s (JPEG, noise, blur), beside the clean x<s>/
DEFAULT_SHIPPED_SCALE = 2  # x2 unless asked: trained longest (weights/x2/MODEL_CARD.md)
PSNR_STRATEGIES = ("weighted", "best")  # need each member's validation PSNR
ALEX_STRATEGIES = ("perceptual",)  # need each member's held-out ST-LPIPS-Alex score ("texture" uses it when there)
_MEMBER_DIR = re.compile(r"member_(\d+)$")


class EnsembleSourceError(UserError):
    """Members that cannot be found, or that do not belong together."""


def median(stack: torch.Tensor) -> torch.Tensor:
    """Median over dim 0 of (K, ...); for even K the mean of the two middle values (torch.median takes the lower)."""
    k = stack.shape[0]
    ordered = stack.sort(dim=0).values
    if k % 2:
        return ordered[k // 2]
    return 0.5 * (ordered[k // 2 - 1] + ordered[k // 2])


def consensus(stack: torch.Tensor, radius: int = CONSENSUS_RADIUS) -> torch.Tensor:
    """(K, B, C, H, W) -> (B, C, H, W): local inverse-variance weighting against the per-pixel median (see module)."""
    stack = stack.float()  # 1 / VARIANCE_FLOOR = 7.8e5 overflows float16 (max 65504): weights in float32
    k, b, _, h, w = stack.shape
    deviation = (stack - median(stack)).square().mean(dim=2)  # (K, B, H, W)
    local = local_mean(deviation.reshape(k * b, 1, h, w), radius).reshape(k, b, 1, h, w)
    weights = 1.0 / (local + VARIANCE_FLOOR)
    return (stack * weights).sum(dim=0) / weights.sum(dim=0)


def combine(stack: torch.Tensor, strategy: str, weights: torch.Tensor, best_index: int,
            reference: torch.Tensor | None = None) -> torch.Tensor:
    """(K, ...) member outputs -> (...) by `strategy` (module docstring); `weights` (K,) summing to 1 serve
    "weighted", "perceptual" and "texture", `best_index` serves "best", `reference` (the pixel-loss ensemble's
    output) serves "texture". Pure: Ensemble and the server's cached outputs share it."""
    if strategy == "mean":
        return stack.mean(dim=0)
    if strategy == "median":
        return median(stack)
    if strategy in ("weighted", "perceptual"):
        return (stack * weights.to(stack.dtype).view(-1, *([1] * (stack.dim() - 1)))).sum(dim=0)
    if strategy == "best":
        return stack[best_index]
    if strategy == "consensus":
        return consensus(stack)
    if strategy == "texture":
        if reference is None:
            raise UserError("strategy 'texture' needs the pixel-loss ensemble's output (the GAN members' texture is "
                            "measured against it)")
        return texture_mean(reference, stack, weights)
    raise UserError(f"unknown ensemble strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")


def default_strategy(*, scored: bool, has_reference: bool) -> str:
    """The strategy when none is asked: "texture" for members scored on held-out ST-LPIPS-Alex (GAN members) with
    their pixel-loss ensemble at hand as its reference P, "perceptual" for scored members without it, else "mean"."""
    if not scored:
        return "mean"
    return "texture" if has_reference else "perceptual"


def supported_strategies(*, has_psnr: bool, scored: bool, has_reference: bool) -> list[str]:
    """Every strategy members with these scores (and reference) can use: weighted and best need a validation PSNR
    for every member, perceptual a held-out ST-LPIPS-Alex score, texture that and the pixel-loss reference."""
    return [s for s in STRATEGIES if (has_psnr or s not in PSNR_STRATEGIES) and (scored or s not in ALEX_STRATEGIES)
            and (s != "texture" or (scored and has_reference))]


def member_weights(strategy: str, k: int, val_psnr: Sequence[float] | None,
                   val_alex: Sequence[float] | None) -> torch.Tensor:
    """(k,) weights summing to 1, the one mapping from scores to weights: 1/d from ST-LPIPS-Alex for "perceptual"
    (and "texture" when scored), else 1/MSE from validation PSNR when given, else equal."""
    if strategy == "perceptual" or (strategy == "texture" and val_alex is not None):
        return perceptual_weights(val_alex)
    if val_psnr is not None:
        return psnr_weights(val_psnr)
    return torch.full((k,), 1 / k)


def perceptual_weights(val_alex: Sequence[float]) -> torch.Tensor:
    """(K,) weights proportional to 1 / d, d = each member's held-out ST-LPIPS-Alex distance, summing to 1.

    The perceptual members' counterpart of `psnr_weights`' 1/MSE: LPIPS-type distances are (weighted) squared
    feature differences, as MSE is a squared pixel difference. A member whose adversarial phase did little (d near
    the pixel-loss members') gets a small share instead of diluting the others' detail."""
    distance = torch.tensor(list(val_alex), dtype=torch.float64)
    if (distance <= 0).any():
        raise UserError(f"perceptual weights need positive ST-LPIPS-Alex scores, got {list(val_alex)}")
    raw = 1.0 / distance
    return (raw / raw.sum()).to(torch.float32)


def psnr_weights(val_psnr: Sequence[float]) -> torch.Tensor:
    """(K,) weights proportional to 10^(psnr/10) = 1/MSE, summing to 1 (shifted by the max to avoid overflow)."""
    psnr = torch.tensor(list(val_psnr), dtype=torch.float64)
    raw = torch.pow(10.0, (psnr - psnr.max()) / 10.0)
    return (raw / raw.sum()).to(torch.float32)


class Ensemble(nn.Module):
    """Members combined by `strategy`. forward: (B, 3, h, w) in [0, 1] -> (B, 3, h*scale, w*scale).

    `val_psnr` (one per member, dB) is needed by "weighted" and "best", `val_alex` (held-out ST-LPIPS-Alex, one per
    member) by "perceptual" (and weights "texture" when given). "texture" (GAN members) needs `reference`: the
    pixel-loss ensemble whose output P the members' texture is measured against (fusion.texture_mean).
    `gan_side` (a GAN generator, or an Ensemble of several) with `alpha` in [0, 1] blends perception in:
    out = (1 - alpha) * combined + alpha * gan_side(x), per pixel with `adaptive_c0` or `guided_tau` > 0.
    `symmetry_map`: with one member, the uncertainty map is its spread over the 8 flips/rotations of the input
    (members that are networks; the server's replayed outputs are not, and keep the zero map of one member).
    """

    def __init__(self, members: Sequence[nn.Module], *, strategy: str = "mean",
                 val_psnr: Sequence[float] | None = None, val_alex: Sequence[float] | None = None,
                 gan_side: nn.Module | None = None, reference: nn.Module | None = None,
                 alpha: float = 0.0, adaptive_c0: float = 0.0, guided_tau: float = 0.0,
                 symmetry_map: bool = False) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        _check_strategy(strategy, len(members), val_psnr, val_alex, reference)
        gan_members = 0 if gan_side is None else len(gan_side.members) if isinstance(gan_side, Ensemble) else 1
        check_fusion(alpha, adaptive_c0, guided_tau, gan_members=gan_members, pixel_members=len(members))
        scales = {m.scale for m in members} | {m.scale for m in (gan_side, reference) if m is not None}
        if len(scales) != 1:
            raise UserError(f"ensemble members have different scales {sorted(scales)}")
        self.members = nn.ModuleList(members)
        self.gan_side = gan_side
        self.reference = reference
        self.scale = scales.pop()
        self.strategy = strategy
        self.alpha = float(alpha)
        self.adaptive_c0 = float(adaptive_c0)
        self.guided_tau = float(guided_tau)
        self.symmetry_map = symmetry_map
        weights = member_weights(strategy, len(members), val_psnr, val_alex)
        self.register_buffer("member_weights", weights, persistent=False)  # (K,) used by "weighted", "perceptual"
        self.best_index = int(torch.tensor(list(val_psnr)).argmax()) if val_psnr is not None else 0

    def receptive_radius(self) -> int:
        """LR pixels of context an output pixel depends on: the widest member, plus the consensus window."""
        radius = max(m.receptive_radius() for m in self._all_generators())
        windows = 0  # HR pixels, summed: an upper bound when one window reads another's output
        if self.strategy == "consensus" or self.guided_tau > 0:
            windows += CONSENSUS_RADIUS
        if self.strategy == "texture" or self.adaptive_c0 > 0:  # the texture's local mean, then the energies' window
            windows += 2 * CONSENSUS_RADIUS
        radius += math.ceil(windows / self.scale)
        return radius

    def _all_generators(self) -> list[nn.Module]:
        return list(self.members) + [m for m in (self.gan_side, self.reference) if m is not None]

    def _stack(self, lr_img: torch.Tensor) -> torch.Tensor:
        return torch.stack([member(lr_img) for member in self.members], dim=0)  # (K, B, 3, H, W)

    def _combine(self, stack: torch.Tensor, lr_img: torch.Tensor, reference: torch.Tensor | None = None
                 ) -> torch.Tensor:
        """reference: P when the caller has it already (a texture GAN side inside a blend), else computed."""
        if self.strategy == "texture" and reference is None:
            reference = self.reference(lr_img)
        return combine(stack, self.strategy, self.member_weights, self.best_index, reference)

    def texture_given(self, lr_img: torch.Tensor, pixel: torch.Tensor) -> torch.Tensor:
        """A "texture" GAN side's output with P given (the blending ensemble's own combination): no second pass
        through the pixel-loss members."""
        return self._combine(self._stack(lr_img), lr_img, pixel)

    def _gan_output(self, lr_img: torch.Tensor, combined: torch.Tensor) -> torch.Tensor:
        gan = self.gan_side
        if isinstance(gan, Ensemble) and gan.strategy == "texture":
            return gan.texture_given(lr_img, combined)
        return gan(lr_img)

    def _blend(self, combined: torch.Tensor, lr_img: torch.Tensor, spread: torch.Tensor | None) -> torch.Tensor:
        """combined: P; spread: the members' std (member_spread), needed by guided fusion only."""
        if self.gan_side is None or self.alpha == 0.0:
            return combined
        if self.guided_tau > 0.0:
            return guided_blend(combined, self._gan_output(lr_img, combined), spread, alpha=self.alpha,
                                tau=self.guided_tau)
        if self.adaptive_c0 == 0.0:
            return (1.0 - self.alpha) * combined + self.alpha * self._gan_output(lr_img, combined)
        gan_stack = self.gan_side._stack(lr_img)  # (K, B, 3, H, W): their texture's coherence steers the share
        gan = self.gan_side._combine(gan_stack, lr_img, combined)  # combined = P for a "texture" GAN side
        return adaptive_blend(combined, gan, gan_stack, alpha=self.alpha, c0=self.adaptive_c0)

    def forward(self, lr_img: torch.Tensor) -> torch.Tensor:
        if self.strategy == "best" and self.guided_tau == 0.0:  # run one member, not K
            return self._blend(self.members[self.best_index](lr_img), lr_img, None)
        stack = self._stack(lr_img)
        spread = member_spread(stack) if self.guided_tau > 0.0 else None  # only guided fusion reads it
        return self._blend(self._combine(stack, lr_img), lr_img, spread)

    def forward_with_uncertainty(self, lr_img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(output (B, 3, H, W), std (B, 1, H, W)): per-pixel std across the members, population form, averaged
        over the 3 channels; same units as the image ([0, 1] scale). One member with `symmetry_map`: the std of
        its outputs over the 8 flips/rotations of the input instead (8 passes; the output is unchanged)."""
        if len(self.members) == 1 and self.symmetry_map:
            return self._one_member_with_uncertainty(lr_img)
        stack = self._stack(lr_img)
        std = member_spread(stack)
        return self._blend(self._combine(stack, lr_img), lr_img, std), std

    def _one_member_with_uncertainty(self, lr_img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        member = self.members[0]
        inner = member.generator if isinstance(member, SelfEnsemble) else member
        symmetries = torch.stack(list(symmetry_outputs(inner, lr_img)), dim=0)  # (8, B, 3, H, W); [0]: identity
        output = symmetries.mean(0) if isinstance(member, SelfEnsemble) else symmetries[0]
        std = member_spread(symmetries)
        return self._blend(output, lr_img, std), std


def _check_strategy(strategy: str, k: int, val_psnr: Sequence[float] | None, val_alex: Sequence[float] | None,
                    reference: nn.Module | None) -> None:
    """UserError when `strategy` is unknown or lacks what it needs (one score per member, or its reference)."""
    if strategy not in STRATEGIES:
        raise UserError(f"unknown ensemble strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if strategy in PSNR_STRATEGIES and (val_psnr is None or len(val_psnr) != k):
        raise UserError(f"strategy {strategy!r} needs one validation PSNR per member")
    if strategy in ALEX_STRATEGIES and (val_alex is None or len(val_alex) != k):
        raise UserError(f"strategy {strategy!r} needs one held-out ST-LPIPS-Alex score per member "
                        "(python -m tools.score_members writes them into the checkpoints)")
    if strategy == "texture" and reference is None:
        raise UserError("strategy 'texture' is for GAN members and needs their pixel-loss ensemble (the "
                        "pretrain checkpoints beside them)")


# ---- where members come from -------------------------------------------------------------------------------------

def run_member_paths(run: Path, checkpoint: str) -> list[Path]:
    """RUN/member_<k>/<checkpoint>.safetensors for every member k, in member order."""
    if checkpoint not in CHECKPOINT_NAMES:
        raise EnsembleSourceError(f"unknown checkpoint {checkpoint!r}; choose one of {', '.join(CHECKPOINT_NAMES)}")
    run = Path(run)
    if not run.is_dir():
        raise EnsembleSourceError(f"{run}: no such run folder")
    dirs = sorted((d for d in run.iterdir() if d.is_dir() and _MEMBER_DIR.match(d.name)),
                  key=lambda d: int(_MEMBER_DIR.match(d.name).group(1)))
    if not dirs:
        raise EnsembleSourceError(f"{run}: no member_<k> folders; is this a training run folder?")
    paths = [d / f"{checkpoint}.safetensors" for d in dirs]
    missing = [path for path in paths if not path.is_file()]
    if missing:
        present = [name for name in CHECKPOINT_NAMES if all((d / f"{name}.safetensors").is_file() for d in dirs)]
        raise EnsembleSourceError(f"{missing[0]}: missing (checkpoint {checkpoint!r} of this run); every member of "
                                  f"{run} has: {', '.join(present) or 'no checkpoint'} (--checkpoint)")
    return paths


def checkout_weights() -> Path | None:
    """The weights/ folder of the source checkout this package was imported from (run in place or installed
    editable), or None: an installed wheel has no pyproject.toml beside its mgsrgan/ folder, and no weights/."""
    checkout = Path(__file__).resolve().parents[2]
    weights = checkout / "weights"
    return weights if (checkout / "pyproject.toml").is_file() and weights.is_dir() else None


def shipped_root() -> Path:
    """The folder holding the shipped ensembles (x2/, x4/, each member_<k>/{pretrain,gan}.safetensors): the folder
    named by $MGSRGAN_WEIGHTS when set, else the source checkout's weights/. The one lookup that inference, the
    evaluation and the server use; a one-line UserError when neither is there."""
    named = os.environ.get(WEIGHTS_ENV)
    if named:
        if not Path(named).is_dir():
            raise EnsembleSourceError(f"{WEIGHTS_ENV}={named}: no such folder; point it at a copy of the "
                                      "repository's weights/ folder (holding x2/ and x4/)")
        return Path(named)
    weights = checkout_weights()
    if weights is None:
        raise EnsembleSourceError(f"no shipped weights here: they live in the repository's weights/ folder; set "
                                  f"{WEIGHTS_ENV}=/path/to/weights, or pass --run RUN_DIR or --weights FILE [FILE ...]")
    return weights


def shipped_dir(scale: int = DEFAULT_SHIPPED_SCALE, real: bool = False) -> Path:
    """<shipped_root()>/x<scale>: the folder of the ensemble shipped for `scale`, or x<scale>-real for the
    real-photo one (`real`: trained on JPEG, noise and blur) (UserError for a scale not shipped, or when no shipped
    weights are found)."""
    if scale not in SHIPPED_SCALES:
        shipped = " and x".join(map(str, SHIPPED_SCALES))
        raise EnsembleSourceError(f"--scale {scale}: the shipped ensembles are x{shipped}; for another factor pass "
                                  "--run/--weights, or --outscale to resize the output")
    return shipped_root() / f"x{scale}{REAL_SUFFIX if real else ''}"


def existing_shipped_dir(scale: int = DEFAULT_SHIPPED_SCALE, real: bool = False) -> Path:
    """shipped_dir(scale, real), with the sentence a user gets when the real-photo model is not shipped yet."""
    folder = shipped_dir(scale, real)
    if real and not folder.is_dir():
        raise EnsembleSourceError(f"--real: no real-photo model for x{scale} is shipped yet ({folder}); the "
                                  f"training campaign's x{scale}-real stages train it (configs/campaign.yaml)")
    return folder


def shipped_member_paths(checkpoint: str, scale: int = DEFAULT_SHIPPED_SCALE, real: bool = False) -> list[Path]:
    """The pretrained ensemble shipped for `scale` (shipped_dir: member_<k>/{pretrain,gan}.safetensors), the
    real-photo one when `real`."""
    folder = existing_shipped_dir(scale, real)
    if not folder.is_dir() or not any(_MEMBER_DIR.match(d.name) for d in folder.iterdir()):
        raise EnsembleSourceError(f"{folder}: no shipped pretrained weights; pass --run RUN_DIR or "
                                  "--weights FILE [FILE ...]")
    if real and checkpoint == Side.GAN and not any(folder.glob(f"member_*/{Side.GAN}.safetensors")):
        raise EnsembleSourceError(f"--real --checkpoint gan: the x{scale} real-photo model ships its SRResNet only "
                                  f"so far ({folder}); its GAN members come from the training campaign's "
                                  f"x{scale}-real GAN stages (configs/campaign.yaml)")
    return run_member_paths(folder, checkpoint)


def load_members(paths: Sequence[Path]) -> list[tuple[nn.Module, dict]]:
    """(generator in eval mode, BatchNorm folded, metadata) per checkpoint; all share one scale and architecture."""
    loaded, first = [], None
    for path in map(Path, paths):
        try:
            generator, meta = load_generator(path)
        except RuntimeError as err:  # strict load_state_dict: tensors that contradict the recorded arch
            raise CheckpointError(f"{path}: weights do not match the architecture in its metadata "
                                  f"({str(err).splitlines()[0]})") from None
        arch = GeneratorArch(**meta["arch"])
        if first is None:
            first = (path, arch)
        elif arch != first[1]:
            raise EnsembleSourceError(f"{path} ({_describe(arch)}) does not match {first[0]} ({_describe(first[1])});"
                                      " ensemble members must share scale and architecture")
        loaded.append((fold_batchnorm(generator), meta))  # inference only: BN folded into the convs (fuse.py)
    return loaded


def _describe(arch: GeneratorArch) -> str:
    skip = ", bicubic skip" if arch.global_skip == "bicubic" else ""
    return f"x{arch.scale}, {arch.num_blocks} blocks, {arch.channels} channels{skip}"


def val_alex_of(path: Path, meta: dict) -> float:
    val = meta.get("val")
    if not isinstance(val, dict) or not isinstance(val.get("stlpips_alex"), (int, float)):
        raise EnsembleSourceError(f"{path}: no held-out ST-LPIPS-Alex score in its metadata; strategy 'perceptual' "
                                  "needs one (python -m tools.score_members RUN_DIR --checkpoint gan), or use "
                                  "--strategy mean")
    return float(val["stlpips_alex"])


def val_psnr_of(path: Path, meta: dict, strategy: str) -> float:
    val = meta.get("val")
    if not isinstance(val, dict) or not isinstance(val.get("psnr"), (int, float)):
        raise EnsembleSourceError(f"{path}: no validation PSNR in its metadata (meta val = {val!r}); strategy "
                                  f"{strategy!r} needs one; use --strategy mean, median or consensus")
    return float(val["psnr"])


def _scores(metas: Sequence[dict], key: str) -> list[float] | None:
    vals = [meta.get("val") for meta in metas]
    if all(isinstance(v, dict) and isinstance(v.get(key), (int, float)) for v in vals):
        return [float(v[key]) for v in vals]
    return None


def alex_scores(metas: Sequence[dict]) -> list[float] | None:
    """Every member's held-out ST-LPIPS-Alex score (`val.stlpips_alex`, what "perceptual" weighting needs), or None
    when any member lacks one."""
    return _scores(metas, "stlpips_alex")


def psnr_scores(metas: Sequence[dict]) -> list[float] | None:
    """Every member's validation PSNR (`val.psnr`, what "weighted" and "best" need), or None when any lacks one."""
    return _scores(metas, "psnr")


def scores_for(strategy: str, paths: Sequence[Path], metas: Sequence[dict]
               ) -> tuple[list[float] | None, list[float] | None]:
    """(val_psnr, val_alex) that `strategy` reads from the members' metadata, for `Ensemble`; EnsembleSourceError
    naming the file when a strategy that needs a score finds none ("texture" weights by them only when there)."""
    val_psnr = val_alex = None
    if strategy in PSNR_STRATEGIES:
        val_psnr = [val_psnr_of(Path(p), meta, strategy) for p, meta in zip(paths, metas)]
    if strategy in ALEX_STRATEGIES:
        val_alex = [val_alex_of(Path(p), meta) for p, meta in zip(paths, metas)]
    if strategy == "texture":
        val_alex = alex_scores(metas)
    return val_psnr, val_alex


def gan_ensemble(generators: Sequence[nn.Module], val_alex: Sequence[float] | None,
                 reference: nn.Module | None = None) -> Ensemble:
    """GAN members as one model (eval mode), combined by `default_strategy`: the texture-preserving mean around
    `reference` (the pixel-loss ensemble) when scored and given, the perceptual-weights mean when scored, else the
    mean."""
    strategy = default_strategy(scored=val_alex is not None, has_reference=reference is not None)
    return Ensemble(generators, strategy=strategy, val_alex=val_alex,
                    reference=reference if strategy == "texture" else None).eval()


def gan_side(generators: Sequence[nn.Module], val_alex: Sequence[float] | None,
             reference: nn.Module | None = None) -> nn.Module:
    """The GAN side that alpha blends in: one generator is itself, several their `gan_ensemble`."""
    return generators[0] if len(generators) == 1 else gan_ensemble(generators, val_alex, reference)


def one_if_identical(paths: Sequence[Path]) -> list[Path]:
    """[paths[0]] when every file has the same bytes, else the paths as given. A campaign's GAN stage ships one
    SRResNet as every member's pixel-loss file: K copies of one network are that network, run once."""
    paths = [Path(p) for p in paths]
    if len(paths) < 2:
        return paths
    digests = {hashlib.sha256(p.read_bytes()).digest() for p in paths}
    return paths[:1] if len(digests) == 1 else paths


def pixel_siblings(paths: Sequence[Path]) -> list[Path] | None:
    """The pixel-loss checkpoint beside each GAN member file (member_<k>/pretrain.safetensors next to
    member_<k>/gan.safetensors), or None when any is missing or the members are pixel-loss files themselves."""
    siblings = [Path(p).parent / f"{Side.PIXEL}.safetensors" for p in paths]
    if any(Path(p).name == s.name or not s.is_file() for p, s in zip(paths, siblings)):
        return None
    return siblings


def build_ensemble(paths: Sequence[Path], *, strategy: str | None = None, gan_paths: Sequence[Path] = (),
                   alpha: float = 0.0, adaptive_c0: float = 0.0, guided_tau: float = 0.0,
                   self_ensemble: bool = False) -> Ensemble:
    """Load checkpoints into an Ensemble (eval mode). The GAN side, if any (`gan_side` of `gan_paths`),
    must match the members' architecture.
    self_ensemble: every generator runs on the 8 flips/rotations of the input (mgsrgan/infer/self_ensemble.py, 8x cost).
    strategy None: `default_strategy`, with the pixel-loss checkpoints beside the members as the reference."""
    if strategy is not None and strategy not in STRATEGIES:
        raise UserError(f"unknown ensemble strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if not paths:
        raise EnsembleSourceError("no ensemble members given")
    paths = one_if_identical(paths)
    loaded = load_members(list(paths) + list(gan_paths))
    if self_ensemble:
        loaded = [(SelfEnsemble(generator), meta) for generator, meta in loaded]
    loaded, gan_loaded = loaded[:len(paths)], loaded[len(paths):]
    check_gan_started_from_pixel([(p, meta) for p, (_, meta) in zip(paths, loaded)],
                                 [(g, meta) for g, (_, meta) in zip(gan_paths, gan_loaded)])
    gan = None
    if gan_loaded:
        pixel = Ensemble([g for g, _ in loaded]).eval()  # P for the texture mean when the GAN side runs alone
        gan = gan_side([g for g, _ in gan_loaded], alex_scores([meta for _, meta in gan_loaded]), pixel)
    metas = [meta for _, meta in loaded]
    siblings = pixel_siblings(paths)
    if strategy is None:
        strategy = default_strategy(scored=alex_scores(metas) is not None, has_reference=siblings is not None)
    reference = None
    if strategy == "texture" and siblings:
        siblings = one_if_identical(siblings)
        sibling_loaded = load_members(siblings)
        check_gan_started_from_pixel([(s, meta) for s, (_, meta) in zip(siblings, sibling_loaded)],
                                     list(zip(paths, metas)))
        generators = [g for g, _ in sibling_loaded]
        reference = Ensemble([SelfEnsemble(g) for g in generators] if self_ensemble else generators).eval()
    val_psnr, val_alex = scores_for(strategy, paths, metas)
    return Ensemble([g for g, _ in loaded], strategy=strategy, val_psnr=val_psnr, val_alex=val_alex, gan_side=gan,
                    reference=reference, alpha=alpha, adaptive_c0=adaptive_c0, guided_tau=guided_tau,
                    symmetry_map=True).eval()
