import pytest

from mgsrgan.schedule import (DISCRIMINATOR, GENERATOR, count_updates, gan_learning_rate_factor, update_kind,
                              update_plan)


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
