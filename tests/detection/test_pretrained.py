"""The configs' ``init_cfg=Pretrained`` loads ImageNet weights of other formats
into the detector's backbone (through mmdet's model building and init)."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config

from res2net_mm.converters.keymaps import from_mmdet

from .utils import CONFIG_DIR


def _build_detector(cfg):
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model


def _assert_loaded(backbone, native):
    own = backbone.state_dict()
    assert set(own) == set(native)
    for key, value in native.items():
        assert torch.equal(own[key], value), key


def test_timm_checkpoint_in_native_config(tmp_path):
    import timm
    ref = timm.create_model('res2net50d', pretrained=False)
    with torch.no_grad():  # BN statistics must load too
        for m in ref.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 1.5)
    path = str(tmp_path / 'res2net50d_timm.pth')
    torch.save(ref.state_dict(), path)

    cfg = Config.fromfile(
        osp.join(CONFIG_DIR, 'faster-rcnn_res2net50-v1b_fpn_1x_coco.py'))
    cfg.model.backbone.init_cfg.checkpoint = path
    model = _build_detector(cfg)
    expected = {k: v for k, v in ref.state_dict().items()
                if not k.startswith('fc.')}
    _assert_loaded(model.backbone, expected)


def test_mmdet_pretrain_in_compat_config(tmp_path):
    """mmdet's own Res2Net weights (its ``stem.*`` naming), as the compatible
    configs' ``open-mmlab://res2net101_v1d_26w_4s`` is."""
    from mmdet.models.backbones import Res2Net as MMDetRes2Net
    ref = MMDetRes2Net(depth=101, scales=4, base_width=26)
    with torch.no_grad():
        for m in ref.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_()
    path = str(tmp_path / 'res2net101_v1d_mmdet.pth')
    torch.save(ref.state_dict(), path)

    cfg = Config.fromfile(
        osp.join(CONFIG_DIR, 'mmdet-compatible',
                 'faster-rcnn_res2net-101_fpn_2x_coco.py'))
    cfg.model.backbone.init_cfg.checkpoint = path
    model = _build_detector(cfg)
    _assert_loaded(model.backbone, from_mmdet(ref.state_dict()))


def test_mismatching_weights_raise(tmp_path):
    """Res2Net-50 weights in a Res2Net-101 config: an error, not random init."""
    import timm
    path = str(tmp_path / 'res2net50d.pth')
    torch.save(timm.create_model('res2net50d').state_dict(), path)
    cfg = Config.fromfile(
        osp.join(CONFIG_DIR, 'retinanet_res2net101-v1b_fpn_1x_coco.py'))
    cfg.model.backbone.init_cfg.checkpoint = path
    with pytest.raises(Exception, match='layer3'):
        _build_detector(cfg)
