"""Deploy mode: every BN folded into its conv; eval outputs unchanged."""
import copy

import pytest
import torch
import torch.nn.functional as F
from mmengine.registry import DefaultScope
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from res2net_mm import Res2Net, Res2NetClassifier
from res2net_mm.deploy import fold_bn, fuse_res2net
from res2net_mm.models.fusion import conv_act, use_onednn
from res2net_mm.models import Bottle2neck

from ..models.utils import TINY, assert_close, randomize

TINY_CFG = dict(type='res2net_mm.Res2Net', **TINY)
VARIANTS = {
    'v1': dict(),
    'v1b': dict(deep_stem=True, avg_down=True),
    'se_res2next': dict(groups=2, scales=3, se_ratio=4),
    'dilated_strided_pool': dict(stage_pool='strided', strides=(1, 2, 1, 1),
                                 dilations=(1, 1, 2, 4)),
    'plugin_after_conv3': dict(plugins=[dict(
        cfg=dict(type='ContextBlock', ratio=1. / 4),
        position='after_conv3')]),
    'drop_path': dict(drop_path_rate=0.3),
}


def tiny(**kwargs):
    cfg = dict(TINY, out_indices=(0, 1, 2, 3))
    cfg.update(kwargs)
    return Res2Net(**cfg)


def bn_count(model):
    return sum(isinstance(m, _BatchNorm) for m in model.modules())


@pytest.mark.parametrize('fmt', ['nchw', 'channels_last'])
@pytest.mark.parametrize('variant', sorted(VARIANTS))
def test_switch_to_deploy_equals_eval(variant, fmt):
    model = randomize(tiny(**VARIANTS[variant])).eval()
    x = torch.randn(2, 3, 64, 64)
    if fmt == 'channels_last':
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        expected = model(x)
        deployed = copy.deepcopy(model).switch_to_deploy()
        assert deployed.deploy and bn_count(deployed) == 0
        for b in deployed.modules():
            if isinstance(b, Bottle2neck):
                # one grouped conv in stage blocks, a biased conv per split
                # elsewhere
                assert len(b.convs) == (1 if b.stage_block else b.scales - 1)
                assert all(c.bias is not None for c in b.convs)
        out = deployed(x)
        deployed.switch_to_deploy()  # idempotent
        again = deployed(x)
    for a, b, c in zip(out, expected, again):
        assert_close(a, b, 1e-5)
        assert torch.equal(a, c)
        if fmt == 'channels_last':
            assert a.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize('fmt', ['nchw', 'channels_last'])
@pytest.mark.parametrize('stride,groups,dilation,residual,relu', [
    (1, 1, 1, False, True), (2, 3, 1, False, True), (1, 2, 2, False, False),
    (1, 1, 1, True, True), (1, 1, 1, True, False)])
def test_fused_kernel_matches_plain_ops(stride, groups, dilation, residual,
                                       relu, fmt):
    """conv + bias (+ residual) (+ ReLU) in one oneDNN call, against the
    three plain ops; and that the fused kernel is the one that ran."""
    conv = nn.Conv2d(12, 24, 3, stride, dilation, dilation, groups)
    x = torch.randn(2, 12, 15, 15)
    if fmt == 'channels_last':
        conv.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        ref = conv(x)
        res = torch.randn_like(ref) if residual else None
        if residual:
            ref = ref + res
        if relu:
            ref = F.relu(ref)
        assert use_onednn(x, conv)
        with torch.profiler.profile() as prof:
            out = conv_act(x, conv, relu=relu, residual=res)
    names = {e.name for e in prof.events()}
    assert any('_convolution_pointwise' in n for n in names), names
    assert_close(out, ref, 1e-6)
    if fmt == 'channels_last':
        assert out.is_contiguous(memory_format=torch.channels_last)
    # With autograd the plain ops run (the fused kernel has no backward).
    xg = x.clone().requires_grad_()
    assert not use_onednn(xg, conv)
    out_g = conv_act(xg, conv, relu=relu, residual=res)
    assert_close(out_g.detach(), ref, 1e-6)
    out_g.sum().backward()
    assert xg.grad is not None


def test_packed_weights_made_once_and_follow_changes():
    """On CPU a deploy conv's weight is reordered for oneDNN once and reused;
    an in-place change, a new weight or a new input shape packs it again, so
    the values are always those of the plain conv."""
    from res2net_mm.models import fusion as ops
    conv = nn.Conv2d(8, 16, 3, 1, 1)
    x = torch.randn(2, 8, 12, 12)
    with torch.no_grad():
        assert_close(conv_act(x, conv), F.relu(conv(x)), 1e-6)
        packed = ops._PACKED[conv][2]
        assert packed.is_mkldnn
        conv_act(x, conv)
        assert ops._PACKED[conv][2] is packed  # reused
        conv.weight.mul_(2)  # in place (as load_state_dict, optimizers)
        assert_close(conv_act(x, conv), F.relu(conv(x)), 1e-6)
        assert ops._PACKED[conv][2] is not packed
        conv.weight = nn.Parameter(torch.randn_like(conv.weight))
        assert_close(conv_act(x, conv), F.relu(conv(x)), 1e-6)
        y = torch.randn(3, 8, 7, 7).contiguous(
            memory_format=torch.channels_last)
        assert_close(conv_act(y, conv), F.relu(conv(y)), 1e-6)
        assert ops._PACKED[conv][1][2] == (3, 8, 7, 7)
    with torch.inference_mode():  # no version counter: never cached
        fresh = nn.Conv2d(8, 16, 3, 1, 1)
        assert_close(conv_act(x, fresh), F.relu(fresh(x)), 1e-6)
        assert fresh not in ops._PACKED


def test_deploy_runs_every_conv_fused():
    """A deployed block runs each of its convs, shortcut included, as one
    fused oneDNN call, and adds the residual in place otherwise."""
    model = fuse_res2net(randomize(tiny(num_stages=1, out_indices=(0, ),
                                        avg_down=True)).eval())
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad(), torch.profiler.profile() as prof:
        model(x)
    names = [e.name for e in prof.events()]
    fused = sum('_convolution_pointwise' in n for n in names)
    plain = sum(n == 'aten::mkldnn_convolution' for n in names)
    # stem + 2 blocks x (conv1, splits, conv3) + the shortcut conv
    block = model.layer1[0]
    assert fused == 1 + 2 * 2 + len(block.convs) + len(model.layer1[1].convs) \
        + 1 and plain == 0, (fused, plain)


def test_deployed_model_still_differentiable():
    """Gradients through a deployed model (e.g. saliency maps) are those of
    the eval-mode model."""
    model = randomize(tiny()).eval()
    deployed = fuse_res2net(copy.deepcopy(model))
    x1 = torch.randn(1, 3, 32, 32, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_()
    sum(o.sum() for o in model(x1)).backward()
    sum(o.sum() for o in deployed(x2)).backward()
    assert_close(x2.grad, x1.grad, 1e-5)


def test_res2net_classifier():
    model = randomize(Res2NetClassifier(num_classes=7, **TINY)).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
        out = fuse_res2net(model)(x)
    assert bn_count(model) == 0
    assert_close(out, expected, 1e-5)


def test_mmpretrain_image_classifier():
    from mmpretrain.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(
            dict(type='ImageClassifier', backbone=dict(TINY_CFG, deep_stem=True,
                                                       avg_down=True),
                 neck=dict(type='GlobalAveragePooling'),
                 head=dict(type='LinearClsHead', num_classes=10,
                           in_channels=512)))
    randomize(model).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(x, mode='tensor')
        out = fuse_res2net(model)(x, mode='tensor')
    assert model.backbone.deploy and bn_count(model) == 0
    assert_close(out, expected, 1e-5)


def test_mmdet_detector_backbone_and_neck():
    """A RetinaNet around the backbone with a BN FPN: our folding takes the
    backbone, mmcv's fuse_conv_bn the neck; every head output unchanged."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    cfg = dict(
        type='RetinaNet',
        backbone=dict(TINY_CFG, out_indices=(1, 2, 3)),
        neck=dict(type='FPN', in_channels=[128, 256, 512], out_channels=32,
                  start_level=0, add_extra_convs='on_input', num_outs=5,
                  norm_cfg=dict(type='BN')),
        bbox_head=dict(
            type='RetinaHead', num_classes=3, in_channels=32,
            stacked_convs=1, feat_channels=32,
            anchor_generator=dict(
                type='AnchorGenerator', octave_base_scale=4,
                scales_per_octave=3, ratios=[0.5, 1.0, 2.0],
                strides=[8, 16, 32, 64, 128]),
            bbox_coder=dict(type='DeltaXYWHBBoxCoder',
                            target_means=[.0, .0, .0, .0],
                            target_stds=[1.0, 1.0, 1.0, 1.0]),
            loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0,
                          alpha=0.25, loss_weight=1.0),
            loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
        test_cfg=dict(nms_pre=100, min_bbox_size=0, score_thr=0.05,
                      nms=dict(type='nms', iou_threshold=0.5),
                      max_per_img=10))
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(cfg)
    randomize(model).eval()
    assert bn_count(model.neck) > 0
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = model._forward(x)
        out = fuse_res2net(model)._forward(x)
    assert bn_count(model) == 0
    flat_e = [t for level in expected for t in level]
    flat_o = [t for level in out for t in level]
    for a, b in zip(flat_o, flat_e):
        assert_close(a, b, 1e-5)


def test_mmcv_fuse_alone_misses_the_split_bns():
    """Why our function exists: mmcv's fuse_conv_bn leaves every bns[i]."""
    from mmcv.cnn import fuse_conv_bn
    model = fuse_conv_bn(randomize(tiny()).eval())
    left = [n for n, m in model.named_modules() if isinstance(m, _BatchNorm)]
    assert left and all('.bns.' in n for n in left)
    fuse_res2net(model)  # finishes the job on an mmcv-fused model
    assert bn_count(model) == 0


def test_unfoldable_pairs_stay_and_still_match():
    """GN cannot be folded; it stays, and the outputs are unchanged."""
    model = randomize(tiny(norm_cfg=dict(type='GN', num_groups=2))).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
        out = copy.deepcopy(model).switch_to_deploy()(x)
    for a, b in zip(out, expected):
        assert_close(a, b, 1e-5)


def test_dcn_stage_keeps_its_bn():
    pytest.importorskip('mmcv.ops')  # compiled mmcv ops are in the stack
    model = randomize(tiny(dcn=dict(type='DCNv2', deform_groups=1),
                           stage_with_dcn=(False, True, False, False))).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
        deployed = copy.deepcopy(model).switch_to_deploy()
        out = deployed(x)
    assert isinstance(deployed.layer2[0].bns[0], _BatchNorm)
    assert isinstance(deployed.layer1[0].bns[0], nn.Identity)
    for a, b in zip(out, expected):
        assert_close(a, b, 1e-5)


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match='contains no res2net_mm'):
        fuse_res2net(nn.Sequential(nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3)))
    with pytest.raises(TypeError, match='only batch norms'):
        fold_bn(nn.Conv2d(4, 4, 1), nn.GroupNorm(2, 4))
    with pytest.raises(ValueError, match='channels'):
        fold_bn(nn.Conv2d(4, 4, 1), nn.BatchNorm2d(5))
