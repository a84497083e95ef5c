"""Same weights, same outputs as the real implementations (random weights and
random BN statistics, eval mode)."""
import numpy as np
import pytest
import torch

from res2net_mm import VARIANTS, Res2Net, build_classifier
from res2net_mm.converters.keymaps import (add_prefix, from_mindcv,
                                           from_mmdet, from_mmpretrain,
                                           from_timm, split_classifier)

from .utils import assert_close, mindcv_net, randomize

# Compared with the references' own layout (see the fixture).
pytestmark = pytest.mark.usefixtures('nchw_like_references')

# Res2Net-family twins; the DLA twins are compared in test_dla.py.
TIMM_VARIANTS = {v.timm: name for name, v in VARIANTS.items()
                 if v.timm and v.model == 'Res2Net'
                 and v.source.startswith('official')}


def load_native(classifier, native):
    backbone, head = split_classifier(native)
    state = add_prefix(backbone, 'backbone.')
    state.update(head)
    classifier.load_state_dict(state, strict=True)
    return classifier


@pytest.mark.parametrize('timm_name', sorted(TIMM_VARIANTS))
def test_matches_timm(timm_name):
    import timm
    theirs = randomize(timm.create_model(timm_name, pretrained=False)).eval()
    ours = load_native(build_classifier(TIMM_VARIANTS[timm_name]),
                       from_timm(theirs.state_dict())).eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert_close(ours(x), theirs(x), rtol=1e-6)


# mmpretrain's Res2Net defaults to the deep stem: every case says which it is.
V1 = dict(deep_stem=False, avg_down=False)
MMPRETRAIN_CASES = [
    dict(depth=50, scales=4, base_width=26, **V1),
    dict(depth=50, scales=4, base_width=26, deep_stem=True, avg_down=True),
    dict(depth=50, scales=8, base_width=14, **V1),
    dict(depth=101, scales=4, base_width=26, deep_stem=True, avg_down=True),
]


@pytest.mark.parametrize('arch', MMPRETRAIN_CASES, ids=str)
def test_matches_mmpretrain_every_stage(arch):
    from mmpretrain.models import Res2Net as PretrainRes2Net
    theirs = randomize(PretrainRes2Net(out_indices=(0, 1, 2, 3), **arch))
    theirs.eval()  # their train() returns None, so no chaining
    ours = Res2Net(out_indices=(0, 1, 2, 3), **arch).eval()
    ours.load_state_dict(from_mmpretrain(theirs.state_dict()), strict=True)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(ours(x), theirs(x), strict=True):
            # 2e-6: our stage blocks run their split convs as one grouped
            # conv (another oneDNN accumulation order), 33 blocks deep at 101.
            assert_close(a, b, rtol=2e-6)


MMDET_CASES = [
    dict(depth=50),
    dict(depth=101),
    # dilated stages: stride-1 stage blocks, where mmdet skips the pool
    dict(depth=50, strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4)),
]


@pytest.mark.parametrize('arch', MMDET_CASES, ids=str)
def test_matches_mmdet_in_compatible_mode(arch):
    from mmdet.models.backbones import Res2Net as DetRes2Net
    theirs = randomize(DetRes2Net(out_indices=(0, 1, 2, 3), scales=4,
                                  base_width=26, **arch))
    theirs.eval()
    native = from_mmdet(theirs.state_dict())
    x = torch.rand(1, 3, 64, 64)
    ours = Res2Net(out_indices=(0, 1, 2, 3), deep_stem=True, avg_down=True,
                   stage_pool='strided', **arch).eval()
    ours.load_state_dict(native, strict=True)
    official = Res2Net(out_indices=(0, 1, 2, 3), deep_stem=True,
                       avg_down=True, **arch).eval()
    official.load_state_dict(native, strict=True)
    with torch.no_grad():
        expected = theirs(x)
        for a, b in zip(ours(x), expected, strict=True):
            assert_close(a, b, rtol=1e-6)
        # the official semantics (default) differ from mmdet from layer1 on
        assert (official(x)[0] - expected[0]).abs().max() > 1e-3


MINDCV_NAMES = {v.mindcv: name for name, v in VARIANTS.items() if v.mindcv}


@pytest.fixture(scope='module')
def mindspore():
    import mindspore as ms
    ms.set_context(mode=ms.PYNATIVE_MODE, device_target='CPU')
    return ms


@pytest.mark.parametrize('mindcv_name', sorted(MINDCV_NAMES))
def test_matches_mindcv_logits(mindspore, mindcv_name):
    net = mindcv_net(mindspore, mindcv_name)
    params = {p.name: torch.from_numpy(p.asnumpy())
              for p in net.get_parameters()}
    num_classes = params['classifier.weight'].shape[0]
    ours = build_classifier(MINDCV_NAMES[mindcv_name],
                            num_classes=num_classes).eval()
    native = from_mindcv(params)
    backbone, head = split_classifier(native)
    state = add_prefix(backbone, 'backbone.')
    state.update(head)
    missing, unexpected = ours.load_state_dict(state, strict=False)
    assert not unexpected
    # MindSpore's BN has no num_batches_tracked; nothing else may be missing
    assert all(k.endswith('num_batches_tracked') for k in missing)
    x = np.random.default_rng(1).random((1, 3, 64, 64), dtype=np.float32)
    expected = torch.from_numpy(net(mindspore.Tensor(x)).asnumpy())
    with torch.no_grad():
        assert_close(ours(torch.from_numpy(x)), expected, rtol=1e-4)


@pytest.mark.parametrize('mindcv_name', sorted(MINDCV_NAMES))
def test_mindcv_reported_params(mindspore, mindcv_name):
    """The table's MindCV figure is what MindCV itself counts for a 1000-class
    model (BN moving statistics are Parameters in MindSpore), and ours agrees
    when counted the same way."""
    from mindcv.models import create_model
    variant = VARIANTS[MINDCV_NAMES[mindcv_name]]
    net = create_model(mindcv_name, pretrained=False, num_classes=1000)
    theirs = sum(int(np.prod(p.shape)) for p in net.get_parameters())
    assert theirs == variant.mindcv_params
    ours = build_classifier(variant.name, num_classes=1000)
    counted = sum(p.numel() for p in ours.parameters()) + sum(
        b.numel() for n, b in ours.named_buffers()
        if n.endswith(('running_mean', 'running_var')))
    assert counted == variant.mindcv_params
