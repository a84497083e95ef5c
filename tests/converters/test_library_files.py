"""Files written by timm, mmpretrain and mmdet themselves convert (through the
command line tool) bit for bit and reproduce those libraries' outputs exactly
(up to float reassociation: relative error <= 1e-6; the weights themselves are
compared bit for bit).

Real architectures, random weights and random BN statistics, eval mode.
"""
import pytest
import torch

from res2net_mm import Res2Net, Res2NetClassifier
from res2net_mm.converters import load_checkpoint_any

from .utils import (assert_close, assert_weights_from, build_in_scope,
                    randomize, run_script, run_tool)

X = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))

# Compared with the references' own layout (see the fixture).
pytestmark = pytest.mark.usefixtures('nchw_like_references')


def classifier_from(path, num_classes, **kwargs):
    """A res2net_mm classifier loaded (strictly) from a converted file."""
    native, info = load_checkpoint_any(path)
    model = Res2NetClassifier(num_classes=num_classes, **kwargs)
    state = {f'backbone.{k}': v for k, v in native.items()
             if not k.startswith('fc.')}
    state.update({k: v for k, v in native.items() if k.startswith('fc.')})
    model.load_state_dict(state, strict=True)
    return model.eval(), info


@pytest.mark.parametrize('timm_name,arch,legacy', [
    ('res2net50_26w_4s', 'res2net50_26w_4s', True),
    ('res2net50d', 'res2net50_v1b_26w_4s', False),
    ('res2next50', 'res2next50', False),
])
def test_timm_files(tmp_path, timm_name, arch, legacy):
    """timm's state_dict saved with torch.save (the official .pth files are
    the same names, saved in the legacy format)."""
    import timm
    theirs = randomize(timm.create_model(timm_name, pretrained=False)).eval()
    src = tmp_path / f'{timm_name}.pth'
    torch.save(theirs.state_dict(), src,
               _use_new_zipfile_serialization=not legacy)
    dst = tmp_path / 'converted.pth'
    result = run_tool('convert.py', src, dst, '--from', 'auto')
    assert result.returncode == 0, result.stderr
    assert 'timm naming (detected)' in result.stdout
    assert f'= {arch}' in result.stdout
    ours, info = classifier_from(dst, 1000, arch=arch)
    assert info['format'] == 'native'
    assert_weights_from(dst, theirs.state_dict())
    with torch.no_grad():
        assert_close(ours(X), theirs(X))
    # and back: the timm file we write loads strictly into timm
    back = tmp_path / 'back.pth'
    assert run_tool('convert.py', dst, back, '--to', 'timm').returncode == 0
    again = timm.create_model(timm_name, pretrained=False).eval()
    again.load_state_dict(torch.load(back, weights_only=True), strict=True)
    with torch.no_grad():
        assert torch.equal(again(X), theirs(X))  # same code, same weights


# (mmpretrain's Res2Net defaults to the deep stem: say so for v1)
MMPRETRAIN_ARCHS = [
    dict(depth=50, scales=4, base_width=26, deep_stem=False, avg_down=False),
    dict(depth=50, scales=4, base_width=26, deep_stem=True, avg_down=True),
]


@pytest.mark.parametrize('arch', MMPRETRAIN_ARCHS, ids=['v1', 'v1b'])
def test_mmpretrain_files(tmp_path, arch):
    from mmengine.runner import save_checkpoint
    from mmpretrain.models import Res2Net as PretrainRes2Net
    # the backbone alone, saved with torch.save
    backbone = randomize(PretrainRes2Net(out_indices=(0, 1, 2, 3), **arch))
    backbone.eval()  # (mmpretrain's train() returns None)
    src = tmp_path / 'backbone.pth'
    torch.save(backbone.state_dict(), src)
    dst = tmp_path / 'native.pth'
    result = run_tool('convert.py', src, dst)
    assert result.returncode == 0, result.stderr
    # a 7x7-stem mmpretrain backbone has exactly the timm / official names
    naming = 'mmpretrain' if arch['deep_stem'] else 'timm'
    assert f'{naming} naming (detected)' in result.stdout
    native, _ = load_checkpoint_any(dst)
    assert_weights_from(dst, backbone.state_dict(), 'mmpretrain')
    ours = Res2Net(out_indices=(0, 1, 2, 3), **arch).eval()
    ours.load_state_dict(native, strict=True)
    with torch.no_grad():
        for a, b in zip(ours(X), backbone(X), strict=True):
            assert_close(a, b)

    # a whole ImageClassifier, saved with mmengine's save_checkpoint
    model = build_in_scope('mmpretrain', dict(
        type='ImageClassifier',
        backbone=dict(type='Res2Net', **arch),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=7, in_channels=2048)))
    randomize(model)
    model.eval()
    src = tmp_path / 'classifier.pth'
    save_checkpoint(dict(meta=dict(epoch=1), state_dict=model.state_dict()),
                    str(src))
    dst = tmp_path / 'classifier_native.pth'
    result = run_tool('convert.py', src, dst)
    assert result.returncode == 0, result.stderr
    assert 'classifier with 7 classes' in result.stdout
    ours, _ = classifier_from(dst, 7, **arch)
    assert_weights_from(dst, model.state_dict(), 'mmpretrain')
    with torch.no_grad():
        expected = model(X, mode='tensor')
        assert_close(ours(X), expected)

    # and back into mmpretrain: strict load, same logits
    back = tmp_path / 'back.pth'
    assert run_tool('convert.py', dst, back, '--to',
                    'mmpretrain').returncode == 0
    again = build_in_scope('mmpretrain', dict(
        type='ImageClassifier', backbone=dict(type='Res2Net', **arch),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=7, in_channels=2048)))
    again.load_state_dict(torch.load(back, weights_only=True)['state_dict'],
                          strict=True)
    again.eval()
    with torch.no_grad():
        assert torch.equal(again(X, mode='tensor'), expected)  # same code


def small_detector_cfg(backbone):
    return dict(
        type='RetinaNet',
        data_preprocessor=dict(type='DetDataPreprocessor',
                               mean=[123.675, 116.28, 103.53],
                               std=[58.395, 57.12, 57.375], bgr_to_rgb=True,
                               pad_size_divisor=32),
        backbone=backbone,
        neck=dict(type='FPN', in_channels=[256, 512, 1024, 2048],
                  out_channels=32, start_level=1, add_extra_convs='on_input',
                  num_outs=5),
        bbox_head=dict(
            type='RetinaHead', num_classes=3, in_channels=32,
            stacked_convs=1, feat_channels=32,
            anchor_generator=dict(type='AnchorGenerator',
                                  octave_base_scale=4, scales_per_octave=3,
                                  ratios=[0.5, 1.0, 2.0],
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


def test_mmdet_files(tmp_path):
    from mmdet.models.backbones import Res2Net as DetRes2Net
    from mmengine.runner import save_checkpoint
    arch = dict(depth=50, scales=4, base_width=26)
    # mmdet's backbone with its pretrain naming (stem.0/1/3/4/6/7)
    theirs = randomize(DetRes2Net(out_indices=(0, 1, 2, 3), **arch))
    theirs.eval()  # (mmdet's train() returns None)
    src = tmp_path / 'mmdet_backbone.pth'
    torch.save(theirs.state_dict(), src)
    dst = tmp_path / 'native.safetensors'
    result = run_tool('convert.py', src, dst, '--to', 'safetensors')
    assert result.returncode == 0, result.stderr
    assert 'mmdet naming (detected)' in result.stdout
    assert "stage_pool='strided'" in result.stdout
    native, info = load_checkpoint_any(dst)
    assert info['container'] == 'safetensors'
    assert_weights_from(dst, theirs.state_dict(), 'mmdet')
    ours = Res2Net(out_indices=(0, 1, 2, 3), deep_stem=True, avg_down=True,
                   stage_pool='strided', **arch).eval()
    ours.load_state_dict(native, strict=True)
    with torch.no_grad():
        for a, b in zip(ours(X), theirs(X), strict=True):
            assert_close(a, b)

    # a whole detector, saved with mmengine's save_checkpoint
    detector = randomize(build_in_scope('mmdet', small_detector_cfg(
        dict(type='Res2Net', out_indices=(0, 1, 2, 3), **arch))))
    detector.eval()
    src = tmp_path / 'retinanet.pth'
    save_checkpoint(dict(meta=dict(epoch=12),
                         state_dict=detector.state_dict()), str(src))
    dst = tmp_path / 'backbone_from_detector.pth'
    # as a script, in a new process, exactly as a user runs it
    result = run_script('convert.py', src, dst, '--to', 'mmdet')
    assert result.returncode == 0, result.stderr
    assert 'detector/classifier part outside the backbone' in result.stdout
    assert 'neck.' in result.stdout and 'bbox_head.' in result.stdout
    # mmdet's own Res2Net loads the written pretrain file strictly
    again = DetRes2Net(out_indices=(0, 1, 2, 3), **arch)
    again.eval()
    again.load_state_dict(torch.load(dst, weights_only=True)['state_dict'],
                          strict=True)
    native, _ = load_checkpoint_any(dst)
    assert_weights_from(dst, detector.backbone.state_dict(), 'mmdet')
    ours = Res2Net(out_indices=(0, 1, 2, 3), deep_stem=True, avg_down=True,
                   stage_pool='strided', **arch).eval()
    ours.load_state_dict(native, strict=True)
    with torch.no_grad():
        expected = detector.backbone(X)
        for a, b, c in zip(ours(X), again(X), expected, strict=True):
            assert torch.equal(b, c)  # mmdet itself, same weights
            assert_close(a, c)
