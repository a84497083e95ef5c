"""The ImageNet and Faster R-CNN configs of Res2Net-DLA-60, Res2NeXt-DLA-60,
SE-Res2Net-50 and bLRes2Net-50 compose, train 2 iterations and evaluate on tiny
sets, with the real architectures (small images)."""
import copy
import math
import os.path as osp

import numpy as np
import pytest
from mmengine.config import Config

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CLS = {
    'res2net_dla60': 'res2net-dla60_8xb32_in1k.py',
    'res2next_dla60': 'res2next-dla60_8xb32_in1k.py',
    'se_res2net50': 'se-res2net50-w26-s4_8xb32_in1k.py',
    'blres2net50': 'blres2net50-w26-s4_8xb32_in1k.py',
}
DET = {
    'res2net_dla60': 'faster-rcnn_res2net-dla60_fpn_1x_coco.py',
    'res2next_dla60': 'faster-rcnn_res2next-dla60_fpn_1x_coco.py',
    'se_res2net50': 'faster-rcnn_se-res2net50_fpn_1x_coco.py',
    'blres2net50': 'faster-rcnn_blres2net50_fpn_1x_coco.py',
}
BACKBONE_TYPES = {'Res2Net': 'res2net_mm.Res2Net',
                  'Res2NetDLA': 'res2net_mm.Res2NetDLA',
                  'bLRes2Net': 'res2net_mm.BLRes2Net'}


def cls_path(arch):
    return osp.join(REPO, 'configs', 'res2net', CLS[arch])


def det_path(arch):
    return osp.join(REPO, 'configs', 'detection', 'res2net-family', DET[arch])


@pytest.fixture(scope='module')
def tiny_imagenet(tmp_path_factory):
    """mmpretrain's ImageNet layout: 4 random 40x40 images per split."""
    import cv2
    root = tmp_path_factory.mktemp('tiny_imagenet')
    rng = np.random.default_rng(0)
    for split in ('train', 'val'):
        (root / split).mkdir()
        (root / 'meta').mkdir(exist_ok=True)
        lines = []
        for i in range(4):
            name = f'{i}.png'
            cv2.imwrite(str(root / split / name),
                        rng.integers(0, 256, (40, 40, 3), dtype=np.uint8))
            lines.append(f'{name} {i % 2}')
        (root / 'meta' / f'{split}.txt').write_text('\n'.join(lines) + '\n')
    return str(root)


@pytest.fixture(scope='module')
def tiny_coco(tmp_path_factory):
    from mmdet.datasets import CocoDataset

    from res2net_mm.datasets.synthetic_coco import generate_synthetic_coco
    root = str(tmp_path_factory.mktemp('tiny_coco') / 'data')
    generate_synthetic_coco(
        root, num_train=2, num_val=1, image_size=128,
        objects_per_image=(2, 3), object_size=(24, 56),
        class_names=CocoDataset.METAINFO['classes'])
    return root


def _runtime(cfg, work_dir):
    cfg.work_dir = work_dir
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'))
    cfg.log_level = 'WARNING'
    return cfg


def tiny_cls_cfg(path, root, work_dir):
    """The config with its data at 32 px, batch 2, one epoch (2 iters)."""
    cfg = _runtime(copy.deepcopy(Config.fromfile(path)), work_dir)
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg[key]
        loader.batch_size = 2
        loader.num_workers = 0
        loader.persistent_workers = False
        loader.dataset.data_root = root
        for t in loader.dataset.pipeline:
            if t['type'] == 'RandomResizedCrop':
                t['scale'] = 32
            elif t['type'] == 'ResizeEdge':
                t['scale'] = 36
            elif t['type'] == 'CenterCrop':
                t['crop_size'] = 32
    cfg.train_cfg.max_epochs = 1
    return cfg


def tiny_det_cfg(path, root, work_dir):
    """The config on 2 + 1 synthetic COCO images at 128 px, batch 1."""
    cfg = _runtime(copy.deepcopy(Config.fromfile(path)), work_dir)
    for split, key in (('train', 'train_dataloader'),
                       ('val', 'val_dataloader'), ('val', 'test_dataloader')):
        loader = cfg[key]
        loader.batch_size = 1
        loader.num_workers = 0
        loader.persistent_workers = False
        ds = loader.dataset
        ds.data_root = root
        ds.ann_file = f'annotations/instances_{split}.json'
        ds.data_prefix = dict(img=f'{split}/')
        for t in ds.pipeline:
            if t['type'] == 'Resize':
                t['scale'] = (128, 128)
    for key in ('val_evaluator', 'test_evaluator'):
        cfg[key].ann_file = osp.join(root, 'annotations/instances_val.json')
        cfg[key].backend_args = None
    # random weights after 2 steps score below the usual 0.05
    cfg.model.test_cfg.rcnn.score_thr = 0.0
    cfg.model.test_cfg.rcnn.max_per_img = 10
    cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=1,
                         val_interval=1000)
    cfg.default_hooks.checkpoint = None
    cfg.pop('auto_scale_lr', None)
    return cfg


def calibrated_dla(arch, folder):
    """Random Res2Net-DLA weights with BN statistics measured on random
    images, saved as an official-layout file (1x1-conv classifier)."""
    import torch

    from res2net_mm.converters.keymaps import dla_to_timm
    from res2net_mm.models.dla import Res2NetDLA
    net = Res2NetDLA(arch=arch)
    net.init_weights()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # cumulative average
    net.train()
    with torch.no_grad():
        for _ in range(2):
            net(torch.rand(2, 3, 128, 128) * 4 - 2)
    state = dla_to_timm(net.state_dict())
    state['fc.weight'] = torch.zeros(1000, 1024, 1, 1)
    state['fc.bias'] = torch.zeros(1000)
    path = str(folder / f'{arch}_calibrated.pth')
    torch.save(state, path)
    return path


@pytest.mark.parametrize('arch', sorted(CLS))
def test_imagenet_config_trains_and_evaluates(arch, tiny_imagenet, tmp_path):
    from res2net_mm import VARIANTS
    from res2net_mm.engine import build_runner
    cfg = tiny_cls_cfg(cls_path(arch), tiny_imagenet, str(tmp_path))
    backbone = cfg.model.backbone
    assert backbone.type == BACKBONE_TYPES[VARIANTS[arch].model]
    assert backbone.arch == arch
    runner = build_runner(cfg)
    assert runner.model.backbone.arch == arch
    # the head matches the backbone's last stage
    assert cfg.model.head.in_channels == runner.model.backbone.out_channels[-1]
    runner.train()
    assert runner.iter == 2
    assert math.isfinite(
        runner.message_hub.get_scalar('train/loss').current())
    metrics = runner.test()
    assert 'accuracy/top1' in metrics
    assert osp.exists(osp.join(str(tmp_path), 'epoch_1.pth'))


@pytest.mark.parametrize('arch', sorted(DET))
def test_faster_rcnn_config_trains_and_tests(arch, tiny_coco, tmp_path):
    from res2net_mm import VARIANTS
    from res2net_mm.engine import build_runner
    cfg = tiny_det_cfg(det_path(arch), tiny_coco, str(tmp_path))
    backbone = cfg.model.backbone
    assert backbone.type == BACKBONE_TYPES[VARIANTS[arch].model]
    assert backbone.norm_eval is True and backbone.init_cfg.type == \
        'Pretrained'
    if VARIANTS[arch].model == 'Res2NetDLA':
        # No download here: stand-in weights in the official layout. DLA has
        # no zero-init residuals, so with norm_eval's fixed init statistics
        # (mean 0, var 1) random features grow ~1e6 by level 5 and no box
        # survives; these weights carry measured BN statistics instead.
        backbone.init_cfg.checkpoint = calibrated_dla(arch, tmp_path)
    else:
        backbone.pop('init_cfg')  # loading is tested below
    runner = build_runner(cfg)
    model = runner.model
    assert list(cfg.model.neck.in_channels) == model.backbone.out_channels
    # the pyramid's strides are the backbone's (checked on a real forward)
    import torch
    with torch.no_grad():
        feats = model.backbone.eval()(torch.zeros(1, 3, 128, 128))
    strides = [128 // f.shape[-1] for f in feats]
    assert strides == cfg.model.roi_head.bbox_roi_extractor.featmap_strides
    assert cfg.model.rpn_head.anchor_generator.strides[:len(strides)] == \
        strides
    runner.train()
    assert runner.iter == 2
    assert math.isfinite(
        runner.message_hub.get_scalar('train/loss').current())
    assert 'coco/bbox_mAP' in runner.test()


@pytest.mark.parametrize('arch', ['se_res2net50', 'blres2net50'])
def test_detector_starts_from_the_imagenet_config_checkpoint(
        arch, tiny_imagenet, tmp_path):
    """The workflow the detection configs name for variants without public
    weights: train the ImageNet config, then the detector loads its
    backbone (frozen stages included) from that checkpoint."""
    import torch

    from res2net_mm.engine import build_runner
    cls_cfg = tiny_cls_cfg(cls_path(arch), tiny_imagenet,
                           str(tmp_path / 'cls'))
    runner = build_runner(cls_cfg)
    runner.train()
    ckpt = osp.join(str(tmp_path / 'cls'), 'epoch_1.pth')
    trained = runner.model.backbone.state_dict()

    cfg = Config.fromfile(det_path(arch))
    cfg.work_dir = str(tmp_path / 'det')
    cfg.model.backbone.init_cfg.checkpoint = ckpt
    det = build_runner(cfg).model
    det.init_weights()
    loaded = det.backbone.state_dict()
    for k, v in trained.items():
        assert torch.equal(loaded[k], v), k
