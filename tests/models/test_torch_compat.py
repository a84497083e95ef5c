"""The backbone on torch 2.1 / 2.2: every torch API newer than 2.1 is looked
up once, with a fallback that computes the same numbers.

These tests FORCE each fallback on the installed torch (monkeypatching the
capability flag), so the main stack proves it against the new-API path; the
oldest stack (``make test-oldest``, torch 2.1.2) then runs the fallbacks for
real in tests/models/test_hierarchy.py and test_fast_paths.py, and these too.
"""
import contextlib
import warnings

import pytest
import torch

from res2net_mm.utils import torch_compat as ops
from res2net_mm.models import hierarchy

from .test_fast_paths import blocks, plain_copy, tiny, train_steps
from .test_hierarchy import (assert_frozen_grads_equal, assert_state_equal,
                             chain_only, graph_nodes, lean_blocks)
from .utils import assert_close, randomize

VARIANTS = {
    'v1': dict(),
    # BNs in eval mode while the convs train: the no-update kernels.
    'v1b_frozen_norm_eval': dict(deep_stem=True, avg_down=True,
                                 frozen_stages=1, norm_eval=True),
    'res2next': dict(groups=2, scales=3),
}


@contextlib.contextmanager
def deprecated_apis_allowed():
    """The old APIs the fallbacks call warn on new torch (Future- or
    DeprecationWarning, depending on the version)."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', FutureWarning)
        warnings.simplefilter('ignore', DeprecationWarning)
        yield


@pytest.fixture
def without_bn_with_update(monkeypatch):
    """As on torch < 2.3: no ``aten._batch_norm_with_update`` & co."""
    monkeypatch.setattr(hierarchy, 'HAS_BN_WITH_UPDATE', False)


@pytest.mark.parametrize('fmt', ['nchw', 'channels_last'])
@pytest.mark.parametrize('variant', sorted(VARIANTS))
def test_chained_splits_native_bn_kernels_bit_exact(without_bn_with_update,
                                                    variant, fmt):
    """ChainedSplits on ``aten.native_batch_norm`` (torch < 2.3 on CPU) is
    still taken, and two SGD steps give the same outputs, input grads,
    weights and BN statistics, bit for bit, as op-by-op autograd."""
    mf = torch.channels_last if fmt == 'channels_last' else \
        torch.contiguous_format
    lean = chain_only(randomize(tiny(**VARIANTS[variant]))).to(
        memory_format=mf).train()
    ref = plain_copy(lean)
    xs = [torch.randn(2, 3, 40, 40).contiguous(memory_format=mf)
          for _ in range(2)]
    probe = lean(xs[0].clone().requires_grad_())[-1]
    assert graph_nodes(probe, 'ChainedSplitsBackward') == len(
        lean_blocks(lean)) > 0
    ref(xs[0])  # the same BN statistics update as the probe's
    out_l, grad_l = train_steps(lean, xs)
    out_r, grad_r = train_steps(ref, xs)
    for step in range(2):
        for a, b in zip(out_l[step], out_r[step]):
            assert torch.equal(a, b)
        assert torch.equal(grad_l[step], grad_r[step])
    assert_state_equal(lean, ref)


def test_frozen_parameters_with_native_bn_kernels(without_bn_with_update):
    lean = chain_only(randomize(tiny())).train()
    for b in lean_blocks(lean):
        b.bns[0].weight.requires_grad_(False)
        b.bns[0].bias.requires_grad_(False)
    assert_frozen_grads_equal(lean)


def test_other_devices_run_op_by_op_without_the_new_kernels(
        without_bn_with_update):
    """Where ``F.batch_norm`` may pick cuDNN (no public op on torch < 2.3),
    ChainedSplits is not used; CPU keeps it."""
    assert hierarchy.can_chain('cpu')
    assert not hierarchy.can_chain('cuda')
    assert not hierarchy.can_chain('xpu')


def test_installed_torch_decides_the_devices():
    assert hierarchy.can_chain('cpu')
    assert hierarchy.can_chain('cuda') == hierarchy.HAS_BN_WITH_UPDATE


# The fallback always; the new API where the installed torch has it (so that
# nothing is skipped on the oldest stack, whose leg fails on any skip).
AUTOCAST_APIS = ['torch<2.4'] + (['torch>=2.4']
                                 if hierarchy._AUTOCAST_TAKES_DEVICE else [])
COMPILE_APIS = ['torch._dynamo'] + (['torch.compiler'] if hasattr(
    torch.compiler, 'is_compiling') else [])


@pytest.mark.parametrize('api', AUTOCAST_APIS)
def test_autocast_check_on_both_apis(monkeypatch, api):
    """``autocast_enabled(device)`` through ``torch.is_autocast_enabled(
    device)`` or, before torch 2.4, the per-device getters; under autocast
    the block runs op by op (the values are test_hierarchy's)."""
    takes_device = api == 'torch>=2.4'
    monkeypatch.setattr(hierarchy, '_AUTOCAST_TAKES_DEVICE', takes_device)
    with deprecated_apis_allowed():
        assert not hierarchy.autocast_enabled('cpu')
        assert not hierarchy.autocast_enabled('cuda')
        assert hierarchy.can_chain('cpu')
        with torch.autocast('cpu', dtype=torch.bfloat16):
            assert hierarchy.autocast_enabled('cpu')
            assert not hierarchy.autocast_enabled('cuda')
            assert not hierarchy.can_chain('cpu')
            block = lean_blocks(chain_only(randomize(tiny())).train())[0]
            x = torch.randn(2, block.in_channels, 8, 8, requires_grad=True)
            assert not block._can_chain_lean(x)


@pytest.mark.parametrize('api', COMPILE_APIS)
def test_exporting_sees_compilation_on_both_apis(monkeypatch, api):
    """``exporting()`` is True inside ``torch.compile`` (so the fused oneDNN
    kernels step aside) with ``torch.compiler.is_compiling`` (torch >= 2.3)
    and with its torch 2.1 fallback, and False in eager mode."""
    public = api == 'torch.compiler'
    fallback = ops._dynamo_is_compiling
    monkeypatch.setattr(
        ops, '_is_compiling',
        torch.compiler.is_compiling if public else fallback)
    torch._dynamo.reset()

    @torch.compile(backend='eager', fullgraph=True)
    def flag(x):
        return x + 1 if ops.exporting() else x - 1

    with deprecated_apis_allowed():
        assert flag(torch.zeros(1)).item() == 1
        assert not ops.exporting()
    torch._dynamo.reset()


def test_whole_backbone_trains_on_the_fallbacks(monkeypatch,
                                                without_bn_with_update):
    """Default arguments, every fast path on, every fallback forced: the
    forward and backward equal ``fast_path=False`` (what failed on torch
    2.1.2 before: the default forward)."""
    monkeypatch.setattr(ops, '_is_compiling', ops._dynamo_is_compiling)
    monkeypatch.setattr(hierarchy, '_AUTOCAST_TAKES_DEVICE', False)
    fast = randomize(tiny()).train()
    ref = plain_copy(fast)
    x = torch.randn(2, 3, 32, 32)
    with deprecated_apis_allowed():
        out_f, grad_f = train_steps(fast, [x])
    out_r, grad_r = train_steps(ref, [x])
    assert any(not b.stage_block for b in blocks(fast))
    # The grouped stage convs reassociate float sums (test_fast_paths.py).
    for a, b in zip(out_f[0], out_r[0]):
        assert_close(a, b, 1e-5)
    assert_close(grad_f[0], grad_r[0], 1e-5)
