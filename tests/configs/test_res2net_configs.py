"""The ImageNet configs of configs/res2net: complete, faithful recipes that run.

Every config composes, names a variant of res2net_mm's table, carries the
standard (or the seed's MindCV) recipe, runs 2 training iterations and 1
validation iteration of the real full-size model on a tiny ImageNet-format folder
(images shrunk to 32 px through the config's own pipeline), and
tools/analysis_tools/get_flops.py reports the table's parameters and FLOPs.
"""
import copy
import glob
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
from mmengine.config import Config

from res2net_mm.models.variants import VARIANTS
from tests.models.utils import load_tool

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG_DIR = osp.join(REPO, 'configs', 'res2net')
CONFIGS = sorted(glob.glob(osp.join(CONFIG_DIR, '*.py')))
STANDARD = [c for c in CONFIGS if '-mindcv-' not in c]
SEED = [c for c in CONFIGS if '-mindcv-' in c]

# MindCV's recipes (configs/res2net/*_ascend.yaml): epochs, warm-up epochs
# (None: step schedule), mixup.
SEED_RECIPES = {
    'res2net50': (200, 4, False),
    'res2net101': (140, None, False),
    'res2net50_v1b': (300, 5, True),
    'res2net101_v1b': (200, 4, False),
}


def _name(path):
    return osp.basename(path)[:-3]


def test_one_standard_config_per_variant():
    archs = sorted(Config.fromfile(c).model.backbone.arch for c in STANDARD)
    assert archs == sorted(VARIANTS)
    seed_archs = sorted(Config.fromfile(c).model.backbone.arch for c in SEED)
    assert seed_archs == sorted(SEED_RECIPES)


@pytest.mark.parametrize('path', STANDARD, ids=_name)
def test_standard_recipe(path):
    cfg = Config.fromfile(path)
    assert _name(path).endswith('_8xb32_in1k')
    assert cfg.default_scope == 'mmpretrain'
    variant = VARIANTS[cfg.model.backbone.arch]
    assert cfg.model.type == 'ImageClassifier'
    # variant.model names the family ('bLRes2Net' is class BLRes2Net)
    assert cfg.model.backbone.type.lower() == \
        f'res2net_mm.{variant.model}'.lower()
    assert cfg.model.neck.type == 'GlobalAveragePooling'
    assert cfg.model.head.type == 'LinearClsHead'
    assert cfg.model.head.num_classes == 1000
    if variant.model == 'Res2Net':
        assert cfg.model.head.in_channels == 2048
    assert cfg.train_dataloader.batch_size == 32
    assert cfg.optim_wrapper.optimizer == dict(
        type='SGD', lr=0.1, momentum=0.9, weight_decay=1e-4)
    assert cfg.param_scheduler.type == 'MultiStepLR'
    assert cfg.param_scheduler.milestones == [30, 60, 90]
    assert cfg.param_scheduler.gamma == 0.1
    assert cfg.train_cfg.max_epochs == 100
    assert cfg.auto_scale_lr == dict(base_batch_size=256, enable=False)
    train = [t['type'] for t in cfg.train_dataloader.dataset.pipeline]
    assert train == [
        'LoadImageFromFile', 'RandomResizedCrop', 'RandomFlip', 'PackInputs'
    ]
    assert cfg.train_dataloader.dataset.pipeline[1].scale == 224
    test = cfg.test_dataloader.dataset.pipeline
    assert (test[1].type, test[1].scale, test[1].edge) == ('ResizeEdge', 256,
                                                           'short')
    assert (test[2].type, test[2].crop_size) == ('CenterCrop', 224)


@pytest.mark.parametrize('path', SEED, ids=_name)
def test_seed_recipe(path):
    cfg = Config.fromfile(path)
    epochs, warmup, mixup = SEED_RECIPES[cfg.model.backbone.arch]
    assert cfg.train_cfg.max_epochs == epochs
    assert cfg.train_dataloader.batch_size == 32
    assert cfg.optim_wrapper.optimizer == dict(
        type='SGD', lr=0.1, momentum=0.9, weight_decay=1e-4)
    assert cfg.model.head.loss.type == 'LabelSmoothLoss'
    assert cfg.model.head.loss.label_smooth_val == 0.1
    if warmup is None:
        assert cfg.param_scheduler.type == 'MultiStepLR'
        assert cfg.param_scheduler.milestones == [30, 60, 90, 120]
    else:
        lin, cos = cfg.param_scheduler
        assert (lin.type, lin.end) == ('LinearLR', warmup)
        assert (cos.type, cos.begin, cos.end, cos.eta_min) == (
            'CosineAnnealingLR', warmup, epochs, 0.)
        assert lin.convert_to_iter_based and cos.convert_to_iter_based
    augments = cfg.model.get('train_cfg', {}).get('augments')
    assert (augments == dict(type='Mixup', alpha=0.2)) if mixup else (
        augments is None)
    train = {t['type']: t for t in cfg.train_dataloader.dataset.pipeline}
    rrc = train['RandomResizedCrop']
    assert (rrc.scale, rrc.interpolation) == (224, 'bilinear')
    assert rrc.crop_ratio_range == (0.08, 1.0)
    assert train['ColorJitter'].brightness == 0.4
    assert train['RandomErasing'].erase_prob == 0.5
    assert train['RandomFlip'].prob == 0.5
    test = cfg.test_dataloader.dataset.pipeline
    # crop_pct 0.875: resize to 224 / 0.875 = 256, then crop 224
    assert test[1].scale == 256 and test[1].interpolation == 'bilinear'
    assert test[2].crop_size == 224


def _write_tiny_imagenet(root, num_classes=3, train_per_class=2, num_val=2):
    """ImageNet layout: train/<wnid>/*.JPEG, flat val/, meta/{train,val}.txt."""
    from PIL import Image
    rng = np.random.RandomState(0)

    def image(path):
        arr = rng.randint(0, 256, (40, 48, 3), dtype=np.uint8)
        Image.fromarray(arr).save(path, format='JPEG')

    lines = []
    for c in range(num_classes):
        wnid = f'n{c:08d}'
        (root / 'train' / wnid).mkdir(parents=True)
        for i in range(train_per_class):
            rel = f'{wnid}/{wnid}_{i}.JPEG'
            image(root / 'train' / rel)
            lines.append(f'{rel} {c}\n')
    (root / 'val').mkdir()
    (root / 'meta').mkdir()
    (root / 'meta' / 'train.txt').write_text(''.join(lines))
    val = []
    for i in range(num_val):
        name = f'ILSVRC2012_val_{i:08d}.JPEG'
        image(root / 'val' / name)
        val.append(f'{name} {i % num_classes}\n')
    (root / 'meta' / 'val.txt').write_text(''.join(val))
    return str(root)


def _shrink(pipeline, size=32):
    for t in pipeline:
        if t['type'] == 'RandomResizedCrop':
            t['scale'] = size
        elif t['type'] == 'ResizeEdge':
            t['scale'] = size + size // 7
        elif t['type'] == 'CenterCrop':
            t['crop_size'] = size


@pytest.fixture(scope='module')
def tiny_imagenet(tmp_path_factory):
    return _write_tiny_imagenet(tmp_path_factory.mktemp('imagenet'))


@pytest.mark.parametrize('path', CONFIGS, ids=_name)
def test_config_trains_and_validates(path, tiny_imagenet, tmp_path):
    """2 training iterations + 1 validation iteration of the full model."""
    from mmengine.runner import Runner

    from res2net_mm.engine import (allow_training_checkpoints,
                                   register_scope_modules)
    allow_training_checkpoints()
    cfg = copy.deepcopy(Config.fromfile(path))
    register_scope_modules(cfg)
    cfg.work_dir = str(tmp_path)
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg[key]
        loader.dataset.data_root = tiny_imagenet
        loader.num_workers = 0
        loader.persistent_workers = False
        _shrink(loader.dataset.pipeline)
    cfg.train_dataloader.batch_size = 3  # 6 images: 2 iterations
    cfg.val_dataloader.batch_size = 2  # 2 images: 1 iteration
    cfg.train_cfg.max_epochs = 1
    cfg.train_cfg.val_interval = 1
    cfg.default_hooks.checkpoint = None  # a 100-700 MB file otherwise
    cfg.default_hooks.logger.interval = 1
    cfg.log_level = 'WARNING'
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 2
    scalars = runner.message_hub.log_scalars
    assert 'val/accuracy/top1' in scalars
    assert np.isfinite(scalars['train/loss'].current())
    backbone = runner.model.backbone
    variant = VARIANTS[cfg.model.backbone.arch]
    assert type(backbone).__name__.lower() == variant.model.lower()
    # the head reads what the backbone gives
    assert runner.model.head.fc.in_features == backbone.out_channels[-1]
    if variant.model == 'Res2Net':
        for key, value in variant.backbone.items():
            assert getattr(backbone, key) == value, key


def _distinct_architectures(paths):
    """One config per distinct backbone (the seed's names repeat official
    architectures)."""
    seen, keep = set(), []
    for path in paths:
        arch = Config.fromfile(path).model.backbone.arch
        key = (VARIANTS[arch].model, repr(sorted(VARIANTS[arch].backbone
                                                 .items())))
        if key not in seen:
            seen.add(key)
            keep.append(path)
    return keep


@pytest.mark.parametrize('path', _distinct_architectures(STANDARD), ids=_name)
def test_get_flops_matches_variant_table(path):
    """Params exactly and conv+linear MACs within 0.5% of the table."""
    r = load_tool('analysis_tools/get_flops.py').complexity(path, (224, 224))
    variant = VARIANTS[Config.fromfile(path).model.backbone.arch]
    assert r['params'] == variant.params
    assert r['macs'] / 1e9 == pytest.approx(variant.gmacs, rel=5e-3)
    assert r['macs_all'] > r['macs']  # norms and pooling come on top


def test_get_flops_command_line():
    path = osp.join(CONFIG_DIR, 'res2net50-w26-s4_8xb32_in1k.py')
    proc = subprocess.run(
        [
            sys.executable,
            osp.join(REPO, 'tools', 'analysis_tools', 'get_flops.py'), path
        ],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'Params: 25,699,120 (25.70 M)' in proc.stdout
    assert 'FLOPs (conv+linear MACs): 4.255 G' in proc.stdout


def test_metafile_and_model_index():
    """metafile.yml lists every config once with the variant table's
    parameters and FLOPs."""
    import yaml
    with open(osp.join(REPO, 'model-index.yml')) as f:
        index = yaml.safe_load(f)
    assert 'configs/res2net/metafile.yml' in index['Import']
    with open(osp.join(CONFIG_DIR, 'metafile.yml')) as f:
        meta = yaml.safe_load(f)
    assert meta['Collections'][0]['Name'] == 'Res2Net'
    assert osp.isfile(osp.join(REPO, meta['Collections'][0]['README']))
    models = meta['Models']
    assert sorted(m['Config'] for m in models) == sorted(
        osp.relpath(c, REPO) for c in CONFIGS)
    for m in models:
        assert m['Name'] == osp.basename(m['Config'])[:-3]
        cfg = Config.fromfile(osp.join(REPO, m['Config']))
        variant = VARIANTS[cfg.model.backbone.arch]
        assert m['Metadata']['Parameters'] == variant.params
        assert m['Metadata']['FLOPs'] == round(variant.gmacs * 1e9)
        # Every model names its task (inference_model picks the Inferencer
        # by it). Accuracies belong to published weights only (Converted
        # From, tests/test_model_zoo.py): a standard recipe lists the
        # official file of its architecture, a seed recipe MindCV's.
        assert [r['Task'] for r in m['Results']] == ['Image Classification']
        converted = m.get('Converted From')
        if converted is not None:
            source = 'mindcv' if '-mindcv-' in m['Config'] else 'official'
            assert converted['Name'].startswith(f'res2net_mm://{source}/')
