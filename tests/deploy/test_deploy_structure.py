"""Deploy swaps structure in every backbone family, and its private torch
kernels have a tested public fallback."""
import copy
import warnings

import pytest
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from res2net_mm import BLRes2Net, Res2Net, Res2NetDLA
from res2net_mm.deploy import FusedConv2d, fuse_res2net
from res2net_mm.models import Bottle2neck, fusion
from res2net_mm.utils import torch_compat

from ..models.utils import TINY, assert_close, randomize

FAMILIES = {
    'res2net': lambda: Res2Net(**TINY, out_indices=(0, 1, 2, 3)),
    'res2net_v1b_se': lambda: Res2Net(**TINY, deep_stem=True, avg_down=True,
                                      se_ratio=4, out_indices=(0, 1, 2, 3)),
    'res2net_dla60': lambda: Res2NetDLA(arch='res2net_dla60',
                                        out_indices=range(6)),
    'blres2net50': lambda: BLRes2Net(arch='blres2net50',
                                     out_indices=(0, 1, 2, 3)),
}


def bn_count(model):
    return sum(isinstance(m, _BatchNorm) for m in model.modules())


def conv_kernels(model, x):
    with torch.no_grad(), torch.profiler.profile() as prof:
        model(x)
    names = [e.name for e in prof.events()]
    return (sum('_convolution_pointwise' in n for n in names),
            sum(n == 'aten::mkldnn_convolution' for n in names))


@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_every_family_deploys_equal_to_eval(family):
    """Every BN folded, every block deployed, every conv a fused kernel, and
    the outputs those of eval mode within 1e-5."""
    model = randomize(FAMILIES[family]()).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
        deployed = fuse_res2net(copy.deepcopy(model), fuse_others=False)
        out = deployed(x)
        deployed.switch_to_deploy()  # idempotent
        again = deployed(x)
    assert deployed.deploy and bn_count(deployed) == 0
    blocks = [m for m in deployed.modules() if isinstance(m, Bottle2neck)]
    assert blocks and all(b.deploy for b in blocks)
    assert all(isinstance(c, FusedConv2d) for b in blocks for c in b.convs)
    for a, b, c in zip(out, expected, again, strict=True):
        assert_close(a, b, 1e-5)
        assert torch.equal(a, c)
    fused, plain = conv_kernels(deployed, x)
    assert fused > 0 and plain == 0, (fused, plain)


def test_bl_blocks_without_last_relu_deploy():
    """The big branch's last block (no final ReLU) deploys too: its fused
    conv3 adds the shortcut and stops there."""
    model = randomize(BLRes2Net(arch='blres2net50')).eval()
    last = model.layer1.big[-1]
    assert not last.last_relu
    x = torch.randn(1, last.in_channels, 16, 16)
    with torch.no_grad():
        expected = last(x)
        assert (expected < 0).any()  # no ReLU at the end
        last.switch_to_deploy()
        assert last.deploy and not last.conv3.relu
        assert_close(last(x), expected, 1e-5)


def test_public_fallback_without_onednn_kernels(monkeypatch):
    """Forced as on a torch without ``mkldnn._convolution_pointwise``: the
    deployed model runs F.conv2d + add + ReLU, same outputs."""
    model = randomize(FAMILIES['res2net_v1b_se']()).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
    deployed = fuse_res2net(copy.deepcopy(model))
    monkeypatch.setattr(fusion, 'HAS_MKLDNN_POINTWISE', False)
    fused, plain = conv_kernels(deployed, x)
    assert fused == 0 and plain > 0
    with torch.no_grad():
        for a, b in zip(deployed(x), expected):
            assert_close(a, b, 1e-5)


def test_unknown_global_hooks_take_the_reference_path(monkeypatch):
    """Forced as on a torch without its private global-hook dicts: the block
    cannot tell whether a hook watches, so it runs every split op by op."""
    block = randomize(Res2Net(**TINY)).layer2[0]
    assert block.stage_block and block._can_group_stage()
    monkeypatch.setattr(torch_compat, '_HAS_GLOBAL_HOOK_DICTS', False)
    assert torch_compat.global_forward_hooks()
    assert not block._can_group_stage() and not block._may_add_in_place()
    ref = copy.deepcopy(block)
    ref.fast_path = False
    x = torch.randn(2, block.in_channels, 16, 16)
    assert torch.equal(block(x), ref(x))


def test_global_hooks_are_seen():
    block = Res2Net(**TINY).layer2[0]
    handle = nn.modules.module.register_module_forward_hook(lambda *_: None)
    try:
        assert not block._can_group_stage()
    finally:
        handle.remove()
    assert block._can_group_stage()


def test_stage_pool_has_one_name():
    """``stage_pool`` on the block as on the backbone; the old block argument
    still works, with a deprecation warning."""
    strided = Bottle2neck(64, 16, stage_block=True, stage_pool='strided')
    assert strided.pool is None and strided.stage_pool == 'strided'
    with pytest.warns(DeprecationWarning, match='stage_pool'):
        old = Bottle2neck(64, 16, stage_block=True, pool_at_stride1=False)
    assert old.pool is None and old.stage_pool == 'strided'
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert Bottle2neck(64, 16, stage_block=True).pool is not None
    with pytest.raises(ValueError, match="stage_pool.*'always', 'strided'"):
        Bottle2neck(64, 16, stage_block=True, stage_pool='never')
