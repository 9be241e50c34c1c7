"""The n:m update plan, precomputed: which network each adversarial step updates.

One step draws one batch and makes one optimizer update. An iteration is one cycle of the plan: `d_updates`
discriminator steps followed by `g_updates` generator steps (discriminator first, as in Goodfellow et al. 2014,
Algorithm 1); `train.gan_iterations` counts these. Because the plan is a pure function of the step index, resuming
at any step needs no saved state.
"""
from __future__ import annotations

import math

GENERATOR = "g"
DISCRIMINATOR = "d"


def update_kind(step: int, g_updates: int, d_updates: int) -> str:
    """Which network step `step` (0-based) of the adversarial phase updates: GENERATOR or DISCRIMINATOR."""
    if g_updates < 1 or d_updates < 1:
        raise ValueError(f"g_updates and d_updates must be >= 1, got {g_updates}:{d_updates}")
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    return DISCRIMINATOR if step % (g_updates + d_updates) < d_updates else GENERATOR


def gan_phase_steps(iterations: int, g_updates: int, d_updates: int) -> int:
    """Steps (optimizer updates) of an adversarial phase of `iterations` n:m cycles."""
    return iterations * (g_updates + d_updates)


def gan_learning_rate_factor(step: int, decay_iteration: int, decay: float, g_updates: int,
                             d_updates: int) -> float:
    """Step decay of the adversarial phase: x decay from the first step of iteration `decay_iteration` (0-based)
    on, i.e. once `decay_iteration` whole n:m cycles are done (Ledig et al. 2017: after 10^5 of 2 x 10^5)."""
    return decay if step >= gan_phase_steps(decay_iteration, g_updates, d_updates) else 1.0


def pixel_learning_rate_factor(step: int, total: int, schedule: str) -> float:
    """Factor on the pixel-loss phase's lr at `step` (0-based) of `total`: 1 (constant), or a cosine from 1 at step 0
    towards 0 at step `total` (Loshchilov and Hutter 2017, without restarts)."""
    if schedule == "constant":
        return 1.0
    if schedule != "cosine":
        raise ValueError(f"unknown pre-training lr schedule {schedule!r}")
    if not 0 <= step < max(total, 1):
        raise ValueError(f"step must be in [0, {total}), got {step}")
    return 0.5 * (1.0 + math.cos(math.pi * step / total))
