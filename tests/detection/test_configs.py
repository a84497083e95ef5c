"""Every detection config composes, swaps only the backbone, trains and tests.

Each config runs 2 training iterations and 1 test iteration (CocoMetric) on a
tiny COCO-format set at 128 px: the real detector of the config (R50/R101 depth,
mmdet's heads), so a broken swap, wrong FPN channels or a backbone that cannot
train in mmdet fails here.
"""
import math
import os.path as osp

import pytest
from mmengine.config import Config

from res2net_mm.datasets.synthetic_coco import generate_synthetic_coco
from tests.cfgutils import plain

from .utils import (ALL_CONFIGS, COMPAT_CONFIGS, NATIVE_CONFIGS, config_id,
                    mmdet_config_path, tiny_run_cfg)

# Detector families expected, each with Res2Net-50-v1b and Res2Net-101-v1b.
FAMILIES = ('faster-rcnn', 'mask-rcnn', 'cascade-rcnn', 'cascade-mask-rcnn',
            'htc-without-semantic', 'retinanet', 'fcos')
PUBLISHED = ('faster-rcnn_res2net-101_fpn_2x_coco',
             'mask-rcnn_res2net-101_fpn_2x_coco',
             'cascade-rcnn_res2net-101_fpn_20e_coco',
             'cascade-mask-rcnn_res2net-101_fpn_20e_coco',
             'htc_res2net-101_fpn_20e_coco')


@pytest.fixture(scope='module')
def tiny_coco(tmp_path_factory):
    from mmdet.datasets import CocoDataset

    # COCO's 80 names, so the configs' 80-class heads and metrics read the
    # files unchanged; the shapes use the first four categories.
    root = str(tmp_path_factory.mktemp('tiny_coco') / 'data')
    generate_synthetic_coco(
        root, num_train=2, num_val=1, image_size=128,
        objects_per_image=(2, 3), object_size=(24, 56),
        class_names=CocoDataset.METAINFO['classes'], with_semantic=True)
    return root


def test_config_set_is_complete():
    names = {osp.basename(p)[:-3] for p in NATIVE_CONFIGS}
    for family in FAMILIES:
        for depth in ('50', '101'):
            assert any(n.startswith(f'{family}_res2net{depth}-v1b_')
                       for n in names), (family, depth)
    assert len(NATIVE_CONFIGS) == 2 * len(FAMILIES)
    assert sorted(osp.basename(p)[:-3] for p in COMPAT_CONFIGS) == sorted(
        PUBLISHED)


def _without(d, *keys):
    return {k: v for k, v in plain(d).items() if k not in keys}


@pytest.mark.parametrize('path', ALL_CONFIGS, ids=config_id)
def test_only_backbone_swapped(path):
    """Compared with the mmdet config it inherits, only the backbone differs
    (and, for FCOS, the input normalisation that goes with the weights)."""
    cfg = Config.fromfile(path)
    with open(path) as f:
        base = next(line.split("'")[1] for line in f
                    if line.startswith('_base_'))
    assert base.startswith('mmdet::')
    ref = Config.fromfile(mmdet_config_path(base[len('mmdet::'):]))

    backbone = cfg.model.backbone
    assert backbone.type == 'res2net_mm.Res2Net'
    assert backbone.frozen_stages == 1 and backbone.norm_eval is True
    assert tuple(backbone.out_indices) == (0, 1, 2, 3)
    assert backbone.init_cfg.type == 'Pretrained'
    assert backbone.init_cfg.checkpoint
    assert set(backbone) <= {
        'type', 'arch', 'stage_pool', 'fast_path', 'out_indices',
        'frozen_stages', 'norm_cfg', 'norm_eval', 'init_cfg'
    }, 'no ResNet argument may leak'
    assert list(cfg.model.neck.in_channels) == [256, 512, 1024, 2048]
    if path in COMPAT_CONFIGS:
        assert backbone.arch == 'res2net101_v1b_26w_4s'
        assert backbone.stage_pool == 'strided'
        assert backbone.fast_path is False  # bit-identical to mmdet
    else:
        assert backbone.get('stage_pool', 'always') == 'always'

    ignore = {'backbone'}
    if osp.basename(path).startswith('fcos'):
        ignore.add('data_preprocessor')
        assert cfg.model.data_preprocessor.bgr_to_rgb is True
    assert _without(cfg.model.to_dict(), *ignore) == _without(
        ref.model.to_dict(), *ignore)
    top = set(cfg.keys()) - {'model', 'custom_imports', 'pretrained'}
    assert top == set(ref.keys()) - {'model'}
    for key in top:
        assert plain(cfg[key]) == plain(ref[key]), key


@pytest.mark.parametrize('path', ALL_CONFIGS, ids=config_id)
def test_train_two_iters_and_test(path, tiny_coco, tmp_path):
    from mmengine.runner import Runner

    from res2net_mm.models import Res2Net

    cfg = tiny_run_cfg(Config.fromfile(path), tiny_coco, str(tmp_path))
    runner = Runner.from_cfg(cfg)
    backbone = runner.model.backbone
    assert type(backbone) is Res2Net
    assert backbone.depth == (50 if 'res2net50' in path else 101)
    frozen = [p.requires_grad for p in backbone.layer1.parameters()]
    assert frozen and not any(frozen)  # frozen_stages=1
    # The gradients reaching the backbone (not the weight change: warm-up
    # starts at lr 2e-5, too small to move fp32 weights in 2 steps). The
    # shortcut conv: residual branches start at zero (zero_init_residual).
    grads = []
    backbone.layer4[0].downsample[1].weight.register_hook(
        lambda g: grads.append(g.abs().sum().item()))

    runner.train()
    assert runner.iter == 2
    loss = runner.message_hub.get_scalar('train/loss').current()
    assert math.isfinite(loss)
    assert len(grads) == 2 and all(g > 0 for g in grads)
    assert not backbone.layer1.training  # frozen stage stays in eval mode

    metrics = runner.test()
    assert 'coco/bbox_mAP' in metrics
    if cfg.model.get('roi_head', {}).get('mask_head'):
        assert 'coco/segm_mAP' in metrics
