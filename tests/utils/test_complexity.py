"""res2net_mm.utils.count_complexity: the one counter of the variant table,
get_flops.py and benchmark.py, checked against hand-computed figures."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from res2net_mm.utils import count_complexity, count_macs
from res2net_mm.utils.complexity import TRACKS_MODULES


class Tiny(nn.Module):
    """conv 3x3 (3 -> 8) + BN + ReLU + max pool, a functional 1x1 conv
    (8 -> 4, no module: hooks would miss it), global mean, linear 4 -> 10."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.MaxPool2d(2))
        self.project = nn.Parameter(torch.randn(4, 8, 1, 1))
        self.head = nn.Linear(4, 10)

    def forward(self, x):
        x = F.conv2d(self.body(x), self.project)
        return self.head(x.mean((2, 3)))


def test_counts_equal_the_formulas():
    model = Tiny().train()
    r = count_complexity(model, torch.zeros(1, 3, 16, 16))
    conv = 16 * 16 * 8 * 3 * 3 * 3
    project = 8 * 8 * 4 * 8
    linear = 4 * 10
    assert r.macs == conv + project + linear
    assert count_macs(model, (1, 3, 16, 16)) == r.macs
    # inference BN with an affine transform: 2 per element; max pool and
    # the global mean: 1 per input element
    assert r.macs_all == r.macs + 2 * 8 * 16 * 16 + 8 * 16 * 16 + 4 * 8 * 8
    assert r.by_operator['aten.convolution'] == conv + project
    assert r.by_operator['aten.addmm'] == linear
    # the model's children; the functional conv and the mean belong to the
    # model itself, no child
    assert r.by_module == ({
        'body': dict(macs=conv, macs_all=conv + 3 * 8 * 16 * 16),
        'head': dict(macs=linear, macs_all=linear)
    } if TRACKS_MODULES else {})
    assert model.training  # the mode is restored


def test_batch_counts_scale_and_kwargs_reach_the_forward():
    model = Tiny()
    one = count_macs(model, (1, 3, 16, 16))
    assert count_macs(model, (3, 3, 16, 16)) == 3 * one

    class Keyword(nn.Module):

        def __init__(self):
            super().__init__()
            self.inner = Tiny()

        def forward(self, x, mode='tensor'):
            assert mode == 'tensor'
            return self.inner(x)

    r = count_complexity(Keyword(), torch.zeros(1, 3, 16, 16), mode='tensor')
    assert r.macs == one
    assert set(r.by_module) == ({'inner'} if TRACKS_MODULES else set())


def test_norms_and_resampling():
    model = nn.Sequential(nn.GroupNorm(2, 8), nn.LayerNorm(6),
                          nn.Upsample(scale_factor=2, mode='bilinear'),
                          nn.AvgPool2d(2), nn.AdaptiveAvgPool2d(3))
    r = count_complexity(model, torch.zeros(1, 8, 6, 6))
    n = 8 * 6 * 6
    assert r.macs == 0
    # group / layer norm with affine: 5 per element; upsampling 1 per output
    # element; pooling 1 per input element
    assert r.macs_all == 5 * n + 5 * n + 4 * n + 4 * n + n


def test_a_failing_forward_raises_and_restores_the_mode():

    class Fails(nn.Module):

        def forward(self, x):
            raise RuntimeError('bad input')

    model = Fails().train()
    with pytest.raises(RuntimeError, match='bad input'):
        count_complexity(model, torch.zeros(1))
    assert model.training
