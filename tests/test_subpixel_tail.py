"""The generator's 9x9 tail computed in its 5x5 sub-pixel form (training and plain forward passes): the same output
and the same gradients, reaching the 9x9 parameters, as the paper's order (every shuffle, then the 9x9 conv)."""
import copy

import pytest
import torch

from mgsrgan.models.generator import Generator, subpixel_weight
from mgsrgan.models.prelu import PReLU


def tap_by_tap(weight: torch.Tensor) -> torch.Tensor:
    """The sub-pixel weight written out tap by tap (fuse.py's derivation, one loop per index)."""
    k_out, c_in, size, _ = weight.shape
    half = size // 2
    reach = (half + 1) // 2
    out = torch.zeros(k_out * 4, c_in * 4, 2 * reach + 1, 2 * reach + 1, dtype=weight.dtype)
    for p in range(2):
        for q in range(2):
            for a in range(2):
                for b in range(2):
                    for m in range(-reach, reach + 1):
                        for n in range(-reach, reach + 1):
                            dy, dx = 2 * m + a - p, 2 * n + b - q
                            if abs(dy) <= half and abs(dx) <= half:
                                out[p * 2 + q::4, a * 2 + b::4, m + reach, n + reach] = \
                                    weight[:, :, dy + half, dx + half]
    return out


@pytest.mark.parametrize("size", [3, 5, 7, 9])
def test_subpixel_weight_is_the_tap_by_tap_derivation(size):
    weight = torch.randn(2, 3, size, size, dtype=torch.float64)
    got = subpixel_weight(weight)
    assert got.shape == (8, 12, 2 * ((size // 2 + 1) // 2) + 1, 2 * ((size // 2 + 1) // 2) + 1)
    assert torch.equal(got, tap_by_tap(weight))


def varied_generator(scale: int, skip: str = "none", dtype=torch.float64) -> Generator:
    """Tiny generator with per-channel PReLU slopes that differ (a wrong phase order would show), in train mode."""
    torch.manual_seed(0)
    generator = Generator(scale=scale, num_blocks=1, channels=8, global_skip=skip).to(dtype)
    with torch.no_grad():
        for module in generator.modules():
            if isinstance(module, PReLU):
                module.weight.uniform_(-0.5, 0.5)
    return generator.train()


@pytest.mark.parametrize("scale,skip", [(2, "none"), (4, "none"), (8, "none"), (4, "bicubic")])
def test_outputs_equal_the_plain_9x9_tail(scale, skip):
    generator = varied_generator(scale, skip)
    x = torch.rand(2, 3, 9, 7, dtype=torch.float64)
    got, expected = generator(x), generator(x, plain_tail=True)
    assert got.shape == expected.shape == (2, 3, 9 * scale, 7 * scale)
    assert (got - expected).abs().max() < 1e-12
    generator32 = varied_generator(scale, skip, torch.float32)
    x32 = x.float()
    assert (generator32(x32) - generator32(x32, plain_tail=True)).abs().max() < 1e-5


def gradients(generator: Generator, x: torch.Tensor, target: torch.Tensor, *, plain_tail: bool,
              dtype=None) -> dict[str, torch.Tensor]:
    x = x.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
        sr_img = generator(x, plain_tail=plain_tail)
    loss = torch.nn.functional.l1_loss(sr_img.float(), target) + (sr_img.float() * target).mean()
    generator.zero_grad(set_to_none=True)
    loss.backward()
    grads = {name: p.grad.clone() for name, p in generator.named_parameters()}
    grads["input"] = x.grad.clone()
    return grads


@pytest.mark.parametrize("scale", [2, 4])
def test_gradients_equal_the_plain_tails_and_reach_the_9x9_weights(scale):
    generator = varied_generator(scale)
    reference = copy.deepcopy(generator)
    x = torch.rand(2, 3, 8, 6, dtype=torch.float64)
    target = torch.rand(2, 3, 8 * scale, 6 * scale, dtype=torch.float64)
    got = gradients(generator, x, target, plain_tail=False)
    expected = gradients(reference, x, target, plain_tail=True)
    assert got.keys() == expected.keys()
    assert got["tail.weight"].shape == (3, 8, 9, 9)  # the 9x9 parameters themselves: checkpoints are unchanged
    last_slope = f"upsample.{len(generator.upsample) - 1}.act.weight"  # moved before the shuffle, per phase
    assert got["tail.weight"].abs().sum() > 0 and got[last_slope].abs().sum() > 0
    for name in expected:  # atol: conv biases before a BatchNorm get ~1e-17 (BN cancels them), rounding only
        torch.testing.assert_close(got[name], expected[name], rtol=1e-9, atol=1e-12, msg=name)


def test_bf16_autocast_gradients_stay_close_to_the_plain_tails():
    generator = varied_generator(4, dtype=torch.float32)
    reference = copy.deepcopy(generator)
    x, target = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 32, 32)
    got = gradients(generator, x, target, plain_tail=False, dtype=torch.bfloat16)
    expected = gradients(reference, x, target, plain_tail=True, dtype=torch.bfloat16)
    for name in ("tail.weight", "tail.bias", "upsample.1.act.weight", "head.0.weight"):
        error = (got[name] - expected[name]).norm() / expected[name].norm()
        assert error < 0.05, (name, float(error))  # bf16 rounding in another summation order, not a wrong map


def test_the_generator_keeps_the_papers_parameters():
    generator = Generator(scale=4, num_blocks=1, channels=8)
    shapes = {name: tuple(p.shape) for name, p in generator.named_parameters()}
    assert shapes["tail.weight"] == (3, 8, 9, 9) and shapes["tail.bias"] == (3,)
    assert shapes["upsample.1.act.weight"] == (8,)
    assert not any("subpixel" in name for name in generator.state_dict())
