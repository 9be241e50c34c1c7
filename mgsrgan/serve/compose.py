"""A view of one image from its members' cached outputs: pure maths, no network runs.

The view is built as the CLI's own `Ensemble`, over members that replay cached outputs (`Replay`), so every
strategy, the alpha knob, adaptive and guided fusion and their checks are the same code as `inference.py` runs: the
page and the API cannot drift from the command line.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mgsrgan.errors import UserError
from mgsrgan.infer.ensemble import STRATEGIES, Ensemble
from mgsrgan.serve.bank import GAN, PIXEL, SIDES, Bank

VIEWS = ("output", "member", "uncertainty", "bicubic")


@dataclass(frozen=True)
class View:
    """What to render. checkpoint: PIXEL or GAN members as the base; strategy None = the CLI default (perceptual
    for scored members, else mean); alpha in [0, 1] blends the GAN side into the pixel-loss base (checkpoint
    PIXEL only); adaptive > 0: adaptive fusion (its c0, in (0, 1]), guided > 0: guided fusion (its tau, 8-bit
    levels; one of the two); member: one
    member's own output (kind "member")."""

    kind: str = "output"
    checkpoint: str = PIXEL
    strategy: str | None = None
    alpha: float = 0.0
    adaptive: float = 0.0
    guided: float = 0.0
    member: int = 0


class Replay(nn.Module):
    """A stand-in generator that returns one cached (3, H, W) output, as a batch of one, whatever its input."""

    def __init__(self, output: torch.Tensor, scale: int) -> None:
        super().__init__()
        self.output, self.scale = output, scale

    def receptive_radius(self) -> int:
        return 0

    def forward(self, lr_img: torch.Tensor) -> torch.Tensor:
        return self.output[None].float()


def check_view(view: View, bank: Bank) -> None:
    """UserError (a 400 for the API) for a view this bank cannot give, with the valid choices."""
    if view.kind not in VIEWS:
        raise UserError(f"unknown view {view.kind!r}; choose one of {', '.join(VIEWS)}")
    if view.checkpoint not in SIDES:
        raise UserError(f"unknown checkpoint {view.checkpoint!r}; choose one of {', '.join(SIDES)}")
    if view.checkpoint not in bank.sides:
        raise UserError(f"checkpoint {view.checkpoint!r}: the x{bank.scale} ensemble has only "
                        f"{', '.join(bank.sides)}")
    if view.strategy is not None and view.strategy not in STRATEGIES:
        raise UserError(f"unknown strategy {view.strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if view.strategy == "texture" and not (view.checkpoint == GAN and texture_ready(bank)):
        raise UserError("strategy 'texture' is for the GAN members (checkpoint gan) with held-out scores and the "
                        "pixel-loss members beside them")
    if not 0.0 <= view.alpha <= 1.0:
        raise UserError(f"alpha must be in [0, 1], got {view.alpha}")
    if view.alpha > 0 and view.checkpoint != PIXEL:
        raise UserError("alpha blends the GAN members into the pixel-loss ones: use it with checkpoint pretrain")
    if view.alpha > 0 and GAN not in bank.sides:
        raise UserError(f"alpha > 0 needs GAN members; the x{bank.scale} ensemble has none")
    if not 0 <= view.adaptive <= 1 or (view.adaptive > 0 and view.alpha == 0):
        raise UserError("adaptive (adaptive fusion's c0) must be in [0, 1], and > 0 only with alpha > 0")
    if view.guided < 0 or (view.guided > 0 and view.alpha == 0):
        raise UserError("guided (guided fusion, 8-bit levels) must be >= 0, and > 0 only with alpha > 0")
    count = len(bank.sides[view.checkpoint].generators)
    if view.kind == "member" and not 0 <= view.member < count:
        raise UserError(f"member {view.member}: the {view.checkpoint} side has members 0..{count - 1}")


def texture_ready(bank: Bank) -> bool:
    """The texture-preserving mean needs scored GAN members and the pixel-loss ones (its reference P)."""
    return GAN in bank.sides and PIXEL in bank.sides and bool(bank.sides[GAN].val_alex)


def gan_strategy(view: View, bank: Bank) -> str:
    """The GAN view's strategy: the asked one, else what inference.py picks (texture, perceptual, mean)."""
    if view.strategy is not None:
        return view.strategy
    return "texture" if texture_ready(bank) else ("perceptual" if bank.sides[GAN].val_alex else "mean")


def sides_needed(view: View, bank: Bank) -> tuple[str, ...]:
    if view.alpha > 0 or (view.checkpoint == GAN and view.kind != "member" and gan_strategy(view, bank) == "texture"):
        return (PIXEL, GAN)
    return (view.checkpoint,)


def build_view(outputs: dict[str, torch.Tensor], bank: Bank, view: View) -> Ensemble:
    """The Ensemble that `inference.py` would build for `view`, over replayed member outputs."""
    side = bank.sides[view.checkpoint]
    members = [Replay(o, bank.scale) for o in outputs[view.checkpoint]]
    pixel = Ensemble([Replay(o, bank.scale) for o in outputs[PIXEL]]) if PIXEL in outputs else None  # P, mean
    if view.checkpoint == GAN:
        strategy = gan_strategy(view, bank)
    else:
        strategy = view.strategy or ("perceptual" if side.val_alex else "mean")
    gan = None
    if view.alpha > 0:
        gan_side = bank.sides[GAN]
        gan_members = [Replay(o, bank.scale) for o in outputs[GAN]]
        texture = texture_ready(bank) and len(gan_members) > 1
        gan = gan_members[0] if len(gan_members) == 1 else Ensemble(
            gan_members, strategy="texture" if texture else ("perceptual" if gan_side.val_alex else "mean"),
            val_alex=gan_side.val_alex, reference=pixel if texture else None)
    return Ensemble(members, strategy=strategy, val_psnr=side.val_psnr, val_alex=side.val_alex, gan_member=gan,
                    reference=pixel if strategy == "texture" else None,
                    alpha=view.alpha, adaptive_c0=view.adaptive, guided_tau=view.guided)


def render(outputs: dict[str, torch.Tensor], bank: Bank, view: View) -> torch.Tensor:
    """The view as an image: (3, H, W) in [0, 1] for output/member, (1, H, W) std in image units for
    uncertainty (the population std across the view's members, mean over channels, as `--uncertainty`)."""
    check_view(view, bank)
    if view.kind == "bicubic":
        raise UserError("the bicubic view is made from the input, not from member outputs")
    if view.kind == "member":
        return outputs[view.checkpoint][view.member].clamp(0.0, 1.0)
    ensemble = build_view(outputs, bank, view)
    dummy = torch.zeros(1, 3, 1, 1)
    with torch.no_grad():
        if view.kind == "uncertainty":
            return ensemble.forward_with_uncertainty(dummy)[1][0]
        return ensemble(dummy)[0].clamp(0.0, 1.0)
