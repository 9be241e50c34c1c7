import pytest

from mgsrgan.train.schedule import (DISCRIMINATOR, GENERATOR, gan_learning_rate_factor, gan_phase_steps,
                                   pixel_learning_rate_factor, update_kind)


def update_plan(steps: int, g_updates: int, d_updates: int) -> list[str]:
    """The update kind of each of `steps` steps, in order, as training asks for them."""
    return [update_kind(i, g_updates, d_updates) for i in range(steps)]


def test_two_to_one_plan():
    assert "".join(update_plan(9, g_updates=2, d_updates=1)) == "dggdggdgg"


def test_one_to_three_plan():
    assert "".join(update_plan(8, g_updates=1, d_updates=3)) == "dddgdddg"


@pytest.mark.parametrize("n,m", [(1, 1), (2, 1), (1, 3), (5, 2)])
@pytest.mark.parametrize("iterations", [0, 1, 7, 100])
def test_whole_iterations_make_n_generator_and_m_discriminator_updates_each(n, m, iterations):
    plan = update_plan(gan_phase_steps(iterations, n, m), n, m)
    assert (plan.count(GENERATOR), plan.count(DISCRIMINATOR)) == (iterations * n, iterations * m)


def test_bad_ratios_are_rejected():
    with pytest.raises(ValueError):
        update_kind(0, 0, 1)


def test_learning_rate_steps_down_once_after_whole_iterations():
    assert [gan_learning_rate_factor(i, 3, 0.1, 1, 1) for i in range(8)] == [1.0] * 6 + [0.1, 0.1]
    assert [gan_learning_rate_factor(i, 1, 0.1, 2, 1) for i in range(5)] == [1.0] * 3 + [0.1, 0.1]  # d g g | d g


def test_paper_config_makes_the_papers_generator_updates_with_the_decay_halfway():
    """Ledig et al. 2017: 10^5 iterations at 1e-4 then 10^5 at 1e-5, i.e. 2 x 10^5 generator updates at 1:1,
    the decay after the first 10^5 of them (gan_steps 200000 gave 10^5, with the decay after 5 x 10^4)."""
    from pathlib import Path

    from mgsrgan.config import load_config
    t = load_config(Path(__file__).resolve().parents[1] / "config.yaml").train
    steps = gan_phase_steps(t.gan_iterations, t.g_updates, t.d_updates)
    plan = update_plan(steps, t.g_updates, t.d_updates)
    assert (plan.count(GENERATOR), plan.count(DISCRIMINATOR)) == (200_000, 200_000)
    factors = [gan_learning_rate_factor(s, t.gan_lr_decay_iteration, t.gan_lr_decay, t.g_updates, t.d_updates)
               for s in range(steps)]
    first_decayed = factors.index(t.gan_lr_decay)
    before = plan[:first_decayed]
    assert (before.count(GENERATOR), before.count(DISCRIMINATOR)) == (100_000, 100_000)
    assert t.gan_g_learning_rate * t.gan_lr_decay == pytest.approx(1e-5)


def test_pretrain_cosine_falls_from_one_towards_zero():
    factors = [pixel_learning_rate_factor(i, 100, "cosine") for i in range(100)]
    assert factors[0] == 1.0 and abs(factors[50] - 0.5) < 1e-12 and 0 < factors[-1] < 1e-3
    assert all(a > b for a, b in zip(factors, factors[1:]))
    assert abs(factors[25] - (0.5 + 0.5 * 2 ** -0.5)) < 1e-12  # cos(pi/4)
    assert {pixel_learning_rate_factor(i, 100, "constant") for i in range(100)} == {1.0}
    with pytest.raises(ValueError):
        pixel_learning_rate_factor(100, 100, "cosine")
