"""DeepLabV3+ and UPerNet with Res2Net-101-v1b at output stride 8: the configs
compose (only the backbone differs from mmseg's), train 2 iterations on the
synthetic shapes set and are evaluated (mIoU) through tools/test.py."""
import copy
import glob
import math
import os.path as osp

import pytest
import torch
from mmengine.config import Config

from tests.cfgutils import plain

from ..models.utils import load_tool

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG_DIR = osp.join(REPO, 'configs', 'segmentation')
CONFIGS = sorted(glob.glob(osp.join(CONFIG_DIR, '*.py')))
DEMOS = sorted(glob.glob(osp.join(CONFIG_DIR, 'demo', '*.py')))
MMSEG_BASES = {
    'deeplabv3plus': 'deeplabv3plus/deeplabv3plus_r101-d8_4xb2-80k_'
    'cityscapes-512x1024.py',
    'upernet': 'upernet/upernet_r101_4xb4-160k_ade20k-512x512.py',
}


def _name(path):
    return osp.basename(path)[:-3]


def _mmseg_config(rel):
    import mmseg
    return Config.fromfile(
        osp.join(osp.dirname(mmseg.__file__), '.mim', 'configs', rel))


def test_config_set():
    assert sorted(_name(p).split('_')[0] for p in CONFIGS) == sorted(
        MMSEG_BASES)
    assert sorted(_name(p).split('_')[0] for p in DEMOS) == sorted(
        MMSEG_BASES)


@pytest.mark.parametrize('path', CONFIGS, ids=_name)
def test_only_backbone_swapped_at_output_stride_8(path):
    cfg = Config.fromfile(path)
    ref = _mmseg_config(MMSEG_BASES[_name(path).split('_')[0]])
    backbone = cfg.model.backbone
    assert backbone.type == 'res2net_mm.Res2Net'
    assert backbone.arch == 'res2net101_v1b_26w_4s'
    assert tuple(backbone.strides) == (1, 2, 1, 1)
    assert tuple(backbone.dilations) == (1, 1, 2, 4)
    assert backbone.init_cfg.type == 'Pretrained'
    assert cfg.model.pretrained is None
    ignore = {'backbone', 'pretrained'}
    ours = {k: v for k, v in plain(cfg.model.to_dict()).items()
            if k not in ignore}
    theirs = {k: v for k, v in plain(ref.model.to_dict()).items()
              if k not in ignore}
    assert ours == theirs
    for key in set(cfg.keys()) - {'model', 'custom_imports', 'pretrained'}:
        assert plain(cfg[key]) == plain(ref[key]), key

    # the built backbone: strides 4, 8, 8, 8 and the heads' channels
    from res2net_mm import MODELS
    net = MODELS.build({**backbone, 'norm_cfg': dict(type='BN'),
                        'init_cfg': None}).eval()
    with torch.no_grad():
        feats = net(torch.zeros(1, 3, 64, 64))
    assert [64 // f.shape[-1] for f in feats] == [4, 8, 8, 8]
    assert [f.shape[1] for f in feats] == [256, 512, 1024, 2048]
    assert net.layer4[0].convs[0].dilation == (4, 4)


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    from res2net_mm.datasets.synthetic_seg import generate_synthetic_seg
    root = str(tmp_path_factory.mktemp('seg') / 'synthetic_shapes')
    generate_synthetic_seg(root, num_train=4, num_val=2, image_size=64,
                           objects_per_image=(1, 3), object_size=(16, 40))
    return root


def tiny_cfg(path, root, work_dir):
    """The demo config at 64 px, batch 2, 2 iterations, no download."""
    cfg = copy.deepcopy(Config.fromfile(path))
    cfg.work_dir = work_dir
    cfg.model.backbone.pop('init_cfg')
    cfg.model.data_preprocessor.size = (64, 64)
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg[key]
        loader.num_workers = 0
        loader.persistent_workers = False
        loader.dataset.data_root = root
    cfg.train_dataloader.batch_size = 2
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=2,
                         val_interval=1000)
    cfg.param_scheduler = [dict(type='PolyLR', power=0.9, begin=0, end=2,
                                by_epoch=False)]
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook',
                                        by_epoch=False, interval=2)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'))
    cfg.log_level = 'WARNING'
    return cfg


@pytest.mark.parametrize('path', DEMOS, ids=_name)
def test_train_two_iters_then_miou_through_tools_test(path, shapes,
                                                      tmp_path):
    from res2net_mm.engine import build_runner
    from res2net_mm.models import Res2Net
    cfg = tiny_cfg(path, shapes, str(tmp_path / 'train'))
    assert cfg.model.decode_head.num_classes == 5
    runner = build_runner(cfg)
    backbone = runner.model.backbone
    assert type(backbone) is Res2Net and backbone.depth == 101
    assert backbone.dilations == (1, 1, 2, 4)
    grads = []
    backbone.layer4[0].downsample[1].weight.register_hook(
        lambda g: grads.append(g.abs().sum().item()))
    runner.train()
    assert runner.iter == 2
    assert math.isfinite(
        runner.message_hub.get_scalar('train/loss').current())
    assert len(grads) == 2 and all(g > 0 for g in grads)
    ckpt = osp.join(str(tmp_path / 'train'), 'iter_2.pth')
    assert osp.isfile(ckpt)

    cfg_file = str(tmp_path / 'tiny_config.py')
    cfg.dump(cfg_file)
    metrics = load_tool('test.py').main(
        [cfg_file, ckpt, '--work-dir', str(tmp_path / 'test')])
    assert set(metrics) >= {'mIoU', 'aAcc', 'mAcc'}
    assert 0 <= metrics['mIoU'] <= 100 and 0 < metrics['aAcc'] <= 100
