"""The n:m update plan, precomputed: which network each adversarial iteration updates.

One iteration draws one batch and makes one optimizer step. A cycle is `d_updates` discriminator steps followed
by `g_updates` generator steps (discriminator first, as in Goodfellow et al. 2014, Algorithm 1), repeated.
Because the plan is a pure function of the iteration index, resuming at any iteration needs no saved state.
"""
from __future__ import annotations

import math

GENERATOR = "g"
DISCRIMINATOR = "d"


def update_kind(iteration: int, g_updates: int, d_updates: int) -> str:
    """Which network iteration `iteration` (0-based) of the adversarial phase updates: GENERATOR or DISCRIMINATOR."""
    if g_updates < 1 or d_updates < 1:
        raise ValueError(f"g_updates and d_updates must be >= 1, got {g_updates}:{d_updates}")
    if iteration < 0:
        raise ValueError(f"iteration must be >= 0, got {iteration}")
    return DISCRIMINATOR if iteration % (g_updates + d_updates) < d_updates else GENERATOR


def update_plan(iterations: int, g_updates: int, d_updates: int) -> list[str]:
    """The update kind of each of `iterations` iterations, in order."""
    return [update_kind(i, g_updates, d_updates) for i in range(iterations)]


def count_updates(iterations: int, g_updates: int, d_updates: int) -> tuple[int, int]:
    """(generator steps, discriminator steps) made in the first `iterations` iterations; closed form."""
    cycle = g_updates + d_updates
    full, rest = divmod(iterations, cycle)
    d_steps = full * d_updates + min(rest, d_updates)
    return iterations - d_steps, d_steps


def gan_learning_rate_factor(iteration: int, decay_step: int, decay: float) -> float:
    """Step decay of the adversarial phase: x decay once `decay_step` iterations are done (Ledig et al. 2017)."""
    return decay if iteration >= decay_step else 1.0


def pretrain_learning_rate_factor(step: int, total: int, schedule: str) -> float:
    """Factor on the pre-training lr at `step` (0-based) of `total`: 1 (constant), or a cosine from 1 at step 0
    towards 0 at step `total` (Loshchilov and Hutter 2017, without restarts)."""
    if schedule == "constant":
        return 1.0
    if schedule != "cosine":
        raise ValueError(f"unknown pre-training lr schedule {schedule!r}")
    if not 0 <= step < max(total, 1):
        raise ValueError(f"step must be in [0, {total}), got {step}")
    return 0.5 * (1.0 + math.cos(math.pi * step / total))
