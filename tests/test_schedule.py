import pytest

from mgsrgan.train.schedule import (DISCRIMINATOR, GENERATOR, count_updates, gan_learning_rate_factor, gan_phase_steps,
                                   pretrain_learning_rate_factor, update_kind, update_plan)


def test_two_to_one_plan():
    assert "".join(update_plan(9, g_updates=2, d_updates=1)) == "dggdggdgg"


def test_one_to_three_plan():
    assert "".join(update_plan(8, g_updates=1, d_updates=3)) == "dddgdddg"


@pytest.mark.parametrize("n,m", [(1, 1), (2, 1), (1, 3), (5, 2)])
@pytest.mark.parametrize("iterations", [0, 1, 7, 100])
def test_closed_form_count_matches_the_plan(n, m, iterations):
    plan = update_plan(iterations, n, m)
    assert count_updates(iterations, n, m) == (plan.count(GENERATOR), plan.count(DISCRIMINATOR))


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
    assert count_updates(steps, t.g_updates, t.d_updates) == (200_000, 200_000)
    factors = [gan_learning_rate_factor(s, t.gan_lr_decay_iteration, t.gan_lr_decay, t.g_updates, t.d_updates)
               for s in range(steps)]
    first_decayed = factors.index(t.gan_lr_decay)
    assert count_updates(first_decayed, t.g_updates, t.d_updates) == (100_000, 100_000)
    assert t.gan_g_learning_rate * t.gan_lr_decay == pytest.approx(1e-5)


def test_pretrain_cosine_falls_from_one_towards_zero():
    factors = [pretrain_learning_rate_factor(i, 100, "cosine") for i in range(100)]
    assert factors[0] == 1.0 and abs(factors[50] - 0.5) < 1e-12 and 0 < factors[-1] < 1e-3
    assert all(a > b for a, b in zip(factors, factors[1:]))
    assert abs(factors[25] - (0.5 + 0.5 * 2 ** -0.5)) < 1e-12  # cos(pi/4)
    assert {pretrain_learning_rate_factor(i, 100, "constant") for i in range(100)} == {1.0}
    with pytest.raises(ValueError):
        pretrain_learning_rate_factor(100, 100, "cosine")
