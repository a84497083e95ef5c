"""The memory format a backbone computes in (``FreezableBackbone``): on CPU the
default is channels_last whatever the input's layout, with the NCHW model's
values and the outputs in the input's layout."""
import copy

import pytest
import torch

from res2net_mm import Res2Net
from res2net_mm.models.blres2net import BLRes2Net
from res2net_mm.models.dla import Res2NetDLA

from .test_fast_paths import VARIANTS, assert_same_state, tiny, train_steps
from .utils import assert_close, randomize

# name -> (builder taking channels_last, the module that sees the stem's output)
BACKBONES = {
    'res2net_v1': (lambda cl: tiny(channels_last=cl), 'layer1'),
    'res2net_v1b': (lambda cl: tiny(channels_last=cl, **VARIANTS['v1b']),
                    'layer1'),
    'dla': (lambda cl: Res2NetDLA(out_indices=range(6), channels_last=cl),
            'level0'),
    'blres2net': (lambda cl: BLRes2Net(out_indices=(0, 1, 2, 3), base_width=4,
                                       channels_last=cl), 'layer1'),
}


def first_stage_layouts(model, name):
    """Records, per forward, whether the first stage saw channels_last."""
    seen = []
    getattr(model, name).register_forward_pre_hook(
        lambda _, args: seen.append(
            args[0].is_contiguous(memory_format=torch.channels_last)))
    return seen


def test_automatic_choice():
    """On CPU the default computes in channels_last; not where exactness with
    per-split implementations was asked for (fast_path=False), with plugins
    or deformable convs from other libraries, off the CPU, or while tracing;
    True and False force it."""
    x = torch.randn(1, 3, 32, 32)
    auto = tiny(channels_last=None)
    assert auto._use_channels_last(x)
    assert not auto._use_channels_last(x.to('meta'))
    assert not tiny(channels_last=None, fast_path=False)._use_channels_last(x)
    plugin = dict(cfg=dict(type='ContextBlock', ratio=1. / 4),
                  position='after_conv3')
    assert not tiny(channels_last=None,
                    plugins=[plugin])._use_channels_last(x)
    dcn = tiny(channels_last=None, dcn=dict(type='DCN', deform_groups=1),
               stage_with_dcn=(False, True, False, False))
    assert not dcn._use_channels_last(x)
    assert tiny(channels_last=True)._use_channels_last(x.to('meta'))
    assert not tiny(channels_last=False)._use_channels_last(x)
    # the default of every backbone
    assert Res2Net()._use_channels_last(x)
    assert Res2NetDLA()._use_channels_last(x)
    assert BLRes2Net(base_width=4)._use_channels_last(x)
    seen = first_stage_layouts(auto, 'layer1')
    traced = torch.jit.trace(auto.eval(), x, check_trace=False)
    assert seen == [False]  # traced graphs keep the input's layout
    traced(x)
    for cls in (Res2Net, Res2NetDLA, BLRes2Net):
        with pytest.raises(TypeError, match='channels_last must be None'):
            cls(channels_last='auto')


@pytest.mark.parametrize('backbone', sorted(BACKBONES))
def test_automatic_channels_last_exact(backbone):
    TOL = 1e-7
    """Automatic channels_last computes the NCHW model's function: in float64
    (where the layouts' accumulation orders cannot hide a wrong value) two
    training steps give the same outputs, input grads, weights and BN
    statistics, and the outputs come back in the input's memory format.

    1e-7: float64 rounding, amplified by training-mode BN over batch 2 at
    small spatial sizes, stays below it (1e-9 and less here); a wrong layout
    gives O(1) differences."""
    build, first = BACKBONES[backbone]
    nchw = randomize(build(False)).double()
    auto = copy.deepcopy(nchw)
    auto.channels_last = None
    seen = first_stage_layouts(auto, first)
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    out_a, grad_a = train_steps(auto.train(), [x])
    out_n, grad_n = train_steps(nchw.train(), [x])
    assert seen == [True]
    for a, b in zip(out_a[0], out_n[0], strict=True):
        assert a.is_contiguous()  # NCHW in, NCHW out
        assert_close(a, b, TOL)
    assert grad_a[0].is_contiguous()
    assert_close(grad_a[0], grad_n[0], TOL)
    assert_same_state(auto, nchw, TOL)
    # a channels_last input stays channels_last, without copies back
    x_cl = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        outs = auto.eval()(x_cl)
        assert seen == [True, True]
        for a, b in zip(outs, nchw.eval()(x), strict=True):
            assert a.is_contiguous(memory_format=torch.channels_last)
            assert_close(a, b, TOL)
    # float32 eval: the same up to rounding
    nchw32 = randomize(build(False)).eval()
    auto32 = copy.deepcopy(nchw32)
    auto32.channels_last = None
    with torch.no_grad():
        for a, b in zip(auto32(x.float()), nchw32(x.float()), strict=True):
            assert_close(a, b, 1e-5)
