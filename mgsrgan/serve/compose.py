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
from mgsrgan.infer.ensemble import STRATEGIES, Ensemble, default_strategy, gan_side
from mgsrgan.infer.fusion import check_fusion
from mgsrgan.io.checkpoint import Side
from mgsrgan.serve.members import Bank

VIEWS = ("output", "member", "uncertainty", "bicubic")


@dataclass(frozen=True)
class View:
    """What to render. side: the pixel-loss or GAN members as the base (the API's `checkpoint`, "pretrain" or
    "gan"); strategy None = the CLI's default (`default_strategy`); alpha in [0, 1] blends the GAN side into the
    pixel-loss base (side pixel only); adaptive > 0: adaptive fusion (its c0, in (0, 1]), guided > 0: guided fusion
    (its tau, 8-bit levels; one of the two); member: one member's own output (kind "member")."""

    kind: str = "output"
    side: str = Side.PIXEL
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
    if view.side not in tuple(Side):
        raise UserError(f"unknown checkpoint {view.side!r}; choose one of {', '.join(Side)}")
    if view.side not in bank.sides:
        raise UserError(f"checkpoint {view.side!r}: the x{bank.scale} ensemble has only {', '.join(bank.sides)}")
    if view.strategy is not None and view.strategy not in STRATEGIES:
        raise UserError(f"unknown strategy {view.strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if view.strategy == "texture" and not (view.side == Side.GAN and texture_ready(bank)):
        raise UserError("strategy 'texture' is for the GAN members (checkpoint gan) with held-out scores and the "
                        "pixel-loss members beside them")
    if view.alpha > 0 and view.side != Side.PIXEL:
        raise UserError(f"alpha blends the GAN members into the pixel-loss ones: use it with checkpoint {Side.PIXEL}")
    gan_members = len(bank.sides[Side.GAN].generators) if Side.GAN in bank.sides else 0
    check_fusion(view.alpha, view.adaptive, view.guided, gan_members=gan_members,
                 pixel_members=len(bank.sides[Side.PIXEL].generators), prefix="")
    count = len(bank.sides[view.side].generators)
    if view.kind == "member" and not 0 <= view.member < count:
        raise UserError(f"member {view.member}: the {view.side} side has members 0..{count - 1}")


def texture_ready(bank: Bank) -> bool:
    """The texture-preserving mean needs scored GAN members and the pixel-loss ones (its reference P)."""
    return Side.GAN in bank.sides and Side.PIXEL in bank.sides and bool(bank.sides[Side.GAN].val_alex)


def view_strategy(view: View, bank: Bank) -> str:
    """The view's strategy: the asked one, else what inference.py picks (`default_strategy`)."""
    if view.strategy is not None:
        return view.strategy
    has_reference = view.side == Side.GAN and Side.PIXEL in bank.sides
    return default_strategy(scored=bool(bank.sides[view.side].val_alex), has_reference=has_reference)


def sides_needed(view: View, bank: Bank) -> tuple[Side, ...]:
    if view.alpha > 0 or (view.side == Side.GAN and view.kind != "member" and view_strategy(view, bank) == "texture"):
        return (Side.PIXEL, Side.GAN)
    return (Side(view.side),)


def build_view(outputs: dict[str, torch.Tensor], bank: Bank, view: View) -> Ensemble:
    """The Ensemble that `inference.py` would build for `view`, over replayed member outputs."""
    side = bank.sides[view.side]
    members = [Replay(o, bank.scale) for o in outputs[view.side]]
    pixel = Ensemble([Replay(o, bank.scale) for o in outputs[Side.PIXEL]]) if Side.PIXEL in outputs else None  # P
    strategy = view_strategy(view, bank)
    gan = None
    if view.alpha > 0:
        gan_members = [Replay(o, bank.scale) for o in outputs[Side.GAN]]
        gan = gan_side(gan_members, bank.sides[Side.GAN].val_alex, pixel)
    return Ensemble(members, strategy=strategy, val_psnr=side.val_psnr, val_alex=side.val_alex, gan_side=gan,
                    reference=pixel if strategy == "texture" else None,
                    alpha=view.alpha, adaptive_c0=view.adaptive, guided_tau=view.guided)


def render(outputs: dict[str, torch.Tensor], bank: Bank, view: View) -> torch.Tensor:
    """The view as an image: (3, H, W) in [0, 1] for output/member, (1, H, W) std in image units for
    uncertainty (the population std across the view's members, mean over channels, as `--uncertainty`)."""
    check_view(view, bank)
    if view.kind == "bicubic":
        raise UserError("the bicubic view is made from the input, not from member outputs")
    if view.kind == "member":
        return outputs[view.side][view.member].clamp(0.0, 1.0)
    ensemble = build_view(outputs, bank, view)
    dummy = torch.zeros(1, 3, 1, 1)
    with torch.no_grad():
        if view.kind == "uncertainty":
            return ensemble.forward_with_uncertainty(dummy)[1][0]
        return ensemble(dummy)[0].clamp(0.0, 1.0)
