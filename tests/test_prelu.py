"""mgsrgan.models.prelu: nn.PReLU's function, parameter and gradients, with its own backward."""
import pytest
import torch
import torch.nn.functional as F

from mgsrgan.models.prelu import PReLU, prelu


def away_from_zero(shape, dtype=torch.float64, seed=0) -> torch.Tensor:
    """Random values with |x| >= 0.05: PReLU's derivative jumps at 0, where implementations may pick either side."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=generator, dtype=dtype)
    return x + 0.05 * torch.sign(x)


@pytest.mark.parametrize("channels", [5, 1])
@pytest.mark.parametrize("channels_last", [False, True])
def test_values_and_gradients_equal_torch_prelu(channels, channels_last):
    x = away_from_zero((3, 5, 7, 6))
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    ours, reference = PReLU(channels).double(), torch.nn.PReLU(channels).double()
    with torch.no_grad():
        ours.weight.copy_(torch.linspace(-0.4, 0.6, channels, dtype=torch.float64))
        reference.weight.copy_(ours.weight)
    grad = away_from_zero(x.shape, seed=1)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = ours(xa), reference(xb)
    (ya * grad).sum().backward()
    (yb * grad).sum().backward()
    assert torch.allclose(ya, yb, atol=1e-12)
    assert torch.allclose(xa.grad, xb.grad, atol=1e-12)
    assert torch.allclose(ours.weight.grad, reference.weight.grad, atol=1e-10)
    assert ours.weight.grad.abs().max() > 0.1  # a gradient that could be wrong


def test_gradcheck():
    x = away_from_zero((2, 3, 4, 4)).requires_grad_()
    weight = torch.tensor([0.25, -0.3, 0.7], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(prelu, (x, weight))


def test_bf16_gradients_stay_close_to_float64():
    """Under bf16 the slope's gradient is summed in float32: within bf16 rounding of the exact one."""
    x64 = away_from_zero((4, 8, 24, 24))
    grad64 = away_from_zero(x64.shape, seed=2)
    weight = torch.full((8,), 0.25, requires_grad=True)
    x = x64.to(torch.bfloat16).requires_grad_()
    (prelu(x, weight) * grad64.to(torch.bfloat16)).sum().backward()
    exact = (grad64 * x64.clamp(max=0)).sum(dim=(0, 2, 3))
    assert torch.allclose(weight.grad.double(), exact, rtol=2e-2, atol=1.0)
    assert weight.grad.abs().max() > 10


def test_loads_nn_prelu_state_and_matches_without_grad():
    reference = torch.nn.PReLU(4, init=0.1)
    ours = PReLU(4)
    ours.load_state_dict(reference.state_dict())  # strict: same key, same shape
    x = away_from_zero((1, 4, 3, 3), dtype=torch.float32)
    with torch.no_grad():
        assert torch.equal(ours(x), F.prelu(x, reference.weight))
