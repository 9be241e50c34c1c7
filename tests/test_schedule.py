import pytest

from mgsrgan.train.schedule import (DISCRIMINATOR, GENERATOR, count_updates, gan_learning_rate_factor,
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


def test_learning_rate_steps_down_once():
    assert [gan_learning_rate_factor(i, 3, 0.1) for i in range(5)] == [1.0, 1.0, 1.0, 0.1, 0.1]


def test_pretrain_cosine_falls_from_one_towards_zero():
    factors = [pretrain_learning_rate_factor(i, 100, "cosine") for i in range(100)]
    assert factors[0] == 1.0 and abs(factors[50] - 0.5) < 1e-12 and 0 < factors[-1] < 1e-3
    assert all(a > b for a, b in zip(factors, factors[1:]))
    assert abs(factors[25] - (0.5 + 0.5 * 2 ** -0.5)) < 1e-12  # cos(pi/4)
    assert {pretrain_learning_rate_factor(i, 100, "constant") for i in range(100)} == {1.0}
    with pytest.raises(ValueError):
        pretrain_learning_rate_factor(100, 100, "cosine")
