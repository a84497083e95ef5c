"""Helpers shared by the model tests."""
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

# Small but real architectures: every code path, a fraction of the cost.
TINY = dict(depth=26, base_width=4, base_channels=16, stem_channels=16)


@torch.no_grad()
def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights and BN statistics, so no parameter is trivially 0/1."""
    g = torch.Generator().manual_seed(seed)
    for name, t in sorted(model.state_dict().items()):
        if not t.is_floating_point():
            continue
        if name.endswith('running_var'):
            t.copy_(torch.rand(t.shape, generator=g) + 0.5)
        elif name.endswith('running_mean'):
            t.copy_(torch.randn(t.shape, generator=g) * 0.1)
        else:
            fan_in = t[0].numel() if t.dim() > 1 else 1
            t.copy_(torch.randn(t.shape, generator=g) / fan_in**0.5)
    return model


def batchnorms(model: nn.Module):
    return [m for m in model.modules() if isinstance(m, _BatchNorm)]


def assert_close(actual, expected, rtol=1e-6):
    """Relative to the reference's scale: exact up to float reassociation."""
    scale = expected.abs().max().clamp_min(1e-12)
    err = (actual - expected).abs().max() / scale
    assert err <= rtol, f'max relative error {err:.3g} > {rtol:g}'
