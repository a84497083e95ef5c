"""The type-only swap on the toolboxes' own configs.

Every config shipped inside the installed mmdet, mmseg and mmpretrain wheels
(``<package>/.mim/configs``) whose backbone is a ResNet-family type gets
``backbone.type = 'res2net_mm.Res2Net'`` and nothing else, except that a
checkpoint the backbone would download (``init_cfg`` of type ``Pretrained``,
or the segmentor's ``pretrained``) is dropped: nothing can be downloaded here.
A ResNeXt config's ``groups`` and ``base_width`` (``width_per_group`` in
mmpretrain) keep their meaning: cardinality and per-group width, which makes
the swapped model a Res2NeXt.

The configs are de-duplicated by (toolbox, backbone dict, model type,
expected failure): a config listed by name in :data:`EXPECTED_FAILURES` is an
entry of its own, and one that matches a failure rule does not stand for the
configs that share its backbone but not its failure. A model-level teacher
checkpoint (mmdet's LAD) is dropped like the backbone's. Every entry is built
through the toolbox's own registry in the config's default scope (weights as
built: no ``init_weights``), with ``<toolbox>/.mim`` as the working folder
(it mirrors the source checkout some configs name paths in), and run on one
small image through the model's own data preprocessor, in eval mode without
gradients:

- the backbone and neck (``extract_feat``) of every entry;
- the whole model (``mode='tensor'``) of the segmentors and classifiers;
  where that mode fails (some heads need data samples), it must fail the
  same way with the original backbone. mmdet's tensor mode needs data
  samples, and with random weights a two-stage detector's heads run on every
  proposal, which makes their cost depend on the weights; the heads see only
  the neck's output.

The swapped backbone's output shapes must equal those of the config's
original backbone on an input of the same shape, so that the necks and heads see what
they were written for.

A config that cannot work is in :data:`EXPECTED_FAILURES` (by config) or
matches a rule of :func:`expected_failure`, with its reason. The test demands
that it still fails with the listed error, so that the table stays honest (a
config that starts working fails the test), and checks who is at fault: the
original ResNet-family config fails identically when the reason is the
toolbox's or the environment's, and works when the reason is Res2Net's.

Reading all configs takes long (mmengine parses every ``_base_`` again), so
the scan result (names only) is cached in a file under the system's temp
folder, keyed by the toolbox versions, the config folders and this file's
text, and the work is spread over :data:`CHUNKS` test ids for pytest-xdist.
"""
import contextlib
import copy
import fcntl
import functools
import glob
import hashlib
import importlib.util
import json
import os
import os.path as osp
import tempfile
from collections import Counter
from dataclasses import dataclass
from importlib.metadata import version
from typing import Callable

import pytest
import torch

TOOLBOXES = ('mmdet', 'mmseg', 'mmpretrain')
DISTRIBUTIONS = ('mmengine', 'mmdet', 'mmsegmentation', 'mmpretrain')
RESNET_FAMILY = ('ResNet', 'ResNetV1c', 'ResNetV1d', 'ResNeXt', 'Res2Net')
SWAPPED_TYPE = 'res2net_mm.Res2Net'
SIZE = 128  # deformable convs need layer4 (1/32) at least 3x3
CHUNKS = 16  # test ids the entries are spread over


def _installed(module):
    return importlib.util.find_spec(module) is not None


@dataclass(frozen=True)
class Failure:
    """Why a swapped config cannot work, as the docs state it.

    Args:
        reason (str): The reason, for the docs.
        error (str): Text the error of the swapped config must contain.
        toolbox_fault (bool): The toolbox's original config fails with the
            identical error (not Res2Net's limit). If False, the original
            config must work: the limit is Res2Net's.
        applies (callable): Whether the failure is expected here; where it
            returns False the config must work.
    """
    reason: str
    error: str
    toolbox_fault: bool
    applies: Callable[[], bool] = lambda: True


BASIC_BLOCK = ('ResNet-18/34 are BasicBlock networks: Res2Net is a '
               'bottleneck design, defined for depths 26, 50, 101, 152 and '
               '200 (the necks and heads of these configs also expect '
               'BasicBlock channels, 64 to 512)')
GROUP_NORM = ('GroupNorm in the backbone: Res2Net\'s widths are not multiples '
              'of its groups (Res2Net-50 26w x 4s has 104 channels in its '
              'first stage, not a multiple of 32; a ResNeXt config\'s '
              'Res2NeXt widths are, and build)')
MM_SYNC_BN = ('mmcv\'s MMSyncBN (in the config\'s neck or heads) asks for the '
              'torch.distributed process group when it is built: the toolbox '
              'runs this config with tools/dist_train.sh')
NO_CPU_KERNEL = 'mmcv 2.1.0 has no CPU kernel for'
NEEDS_SKIMAGE = 'needs scikit-image, an optional mmdet dependency'
NEEDS_FAIRSCALE = ('needs fairscale, an optional mmdet dependency (the '
                   'config checkpoints its encoder layers)')
TOOLBOX_CONFIG_BUG = 'the toolbox\'s own config does not build:'

_BOXINST = Failure(NEEDS_SKIMAGE, 'skimage is not installed', True,
                   lambda: not _installed('skimage'))

# config (toolbox/relative path) -> Failure
EXPECTED_FAILURES = {
    'mmdet/boxinst/boxinst_r101_fpn_ms-90k_coco.py': _BOXINST,
    'mmdet/boxinst/boxinst_r50_fpn_ms-90k_coco.py': _BOXINST,
    'mmdet/grounding_dino/grounding_dino_r50_scratch_8xb2_1x_coco.py': Failure(
        NEEDS_FAIRSCALE, 'please install fairscale', True,
        lambda: not _installed('fairscale')),
    'mmdet/carafe/faster-rcnn_r50_fpn-carafe_1x_coco.py': Failure(
        NO_CPU_KERNEL + ' CARAFE upsampling (the neck); it runs on CUDA',
        'carafe_forward_impl: implementation for device cpu not found', True),
    'mmdet/cascade_rpn/cascade-rpn_r50-caffe_fpn_1x_coco.py': Failure(
        TOOLBOX_CONFIG_BUG + ' CascadeRPNHead requires num_classes, which '
        'the config does not set',
        "missing 1 required positional argument: 'num_classes'", True),
}


def listed_failure(name, model):
    """The :class:`Failure` listed for a config (by name or by rule), whether
    or not it applies here, or None.

    Args:
        name (str): ``toolbox/relative/path.py``.
        model (dict): The config's (original) model dict.
    """
    if name in EXPECTED_FAILURES:
        return EXPECTED_FAILURES[name]
    backbone = model['backbone']
    depth = backbone.get('depth')
    if depth in (18, 34):
        return Failure(BASIC_BLOCK, f'invalid depth {depth} for Res2Net',
                       False)
    norm = backbone.get('norm_cfg') or {}
    if norm.get('type') == 'GN' and backbone.get('groups', 1) == 1:
        return Failure(GROUP_NORM, 'must be divisible by num_groups', False)
    if "'MMSyncBN'" in repr(model):
        return Failure(MM_SYNC_BN, 'Default process group has not been '
                       'initialized', True)
    return None


def expected_failure(name, model):
    """The :class:`Failure` expected of a swapped config here, or None."""
    failure = listed_failure(name, model)
    return failure if failure is not None and failure.applies() else None


# Configs of the toolboxes that mmengine cannot read at all (their own
# defects: a base file that is not shipped, or mixed config syntaxes).
UNREADABLE = {
    'mmdet/bytetrack/bytetrack_yolox_x_8xb4-amp-80e_crowdhuman-mot17halftrain'
    '_test-mot17test.py': 'its _base_ path repeats bytetrack/',
    'mmdet/sort/faster-rcnn_r50_fpn_8xb2-4e_mot17train_test-mot17train.py':
    'its _base_ (faster-rcnn_r50_fpn_8xb2-4e_mot17halftrain_test-mot17halfval)'
    ' is not shipped',
    'mmdet/sort/faster-rcnn_r50_fpn_8xb2-8e_mot20halftrain_test-mot20halfval'
    '.py': 'same missing _base_',
    'mmdet/sort/faster-rcnn_r50_fpn_8xb2-8e_mot20train_test-mot20train.py':
    'same missing _base_',
    'mmpretrain/replknet/deploy/replknet-31B-deploy_32xb64_in1k-384px.py':
    'inherits a lazy-import (new-style) base from an old-style config',
    'mmpretrain/replknet/deploy/replknet-31B-deploy_32xb64_in1k.py':
    'inherits a lazy-import base from an old-style config',
    'mmpretrain/replknet/replknet-31B_32xb64_in1k-384px.py':
    'inherits a lazy-import base from an old-style config',
    'mmpretrain/replknet/replknet-31B_32xb64_in1k.py':
    'inherits a lazy-import base from an old-style config',
    'mmpretrain/swin_transformer_v2/swinv2-base-w12_8xb128_in21k-192px.py':
    "reads test_pipeline from a base that has none (KeyError: 'test_pipeline')",
    'mmpretrain/swin_transformer_v2/swinv2-large-w12_8xb128_in21k-192px.py':
    "reads test_pipeline from a base that has none (KeyError: 'test_pipeline')",
}

# The configs the issue names: each must be swept (itself or the entry that
# stands for it after de-duplication) and work.
REPRESENTATIVE = (
    'mmdet/faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py',
    'mmdet/mask_rcnn/mask-rcnn_r50-caffe_fpn_1x_coco.py',
    'mmdet/retinanet/retinanet_r50_fpn_1x_coco.py',
    'mmdet/dcn/faster-rcnn_r50-dconv-c3-c5_fpn_1x_coco.py',
    'mmdet/res2net/faster-rcnn_res2net-101_fpn_2x_coco.py',
    'mmpretrain/resnet/resnet50_8xb32_in1k.py',
    'mmseg/deeplabv3/deeplabv3_r50-d8_4xb2-40k_cityscapes-512x1024.py',
    'mmseg/deeplabv3plus/deeplabv3plus_r50-d8_4xb2-40k_cityscapes-512x1024.py',
    'mmseg/pspnet/pspnet_r50-d8_4xb2-40k_cityscapes-512x1024.py',
)


def _register(toolbox):
    import res2net_mm  # noqa: F401  registers res2net_mm.Res2Net
    if toolbox == 'mmdet':
        from mmdet.utils import register_all_modules
    elif toolbox == 'mmseg':
        from mmseg.utils import register_all_modules
    else:
        from mmpretrain.utils import register_all_modules
    register_all_modules(init_default_scope=False)


def _registry(toolbox):
    if toolbox == 'mmdet':
        from mmdet.registry import MODELS
    elif toolbox == 'mmseg':
        from mmseg.registry import MODELS
    else:
        from mmpretrain.registry import MODELS
    return MODELS


def config_root(toolbox):
    spec = importlib.util.find_spec(toolbox)
    return osp.join(osp.dirname(spec.origin), '.mim', 'configs')


def _is_resnet_family(backbone):
    if not isinstance(backbone, dict):
        return False
    kind = backbone.get('type')
    return isinstance(kind, str) and kind.split('.')[-1] in RESNET_FAMILY


def _drop_checkpoints(model):
    backbone = model['backbone']
    init_cfg = backbone.get('init_cfg')
    if isinstance(init_cfg, dict) and init_cfg.get('type') == 'Pretrained':
        del backbone['init_cfg']
    backbone.pop('pretrained', None)
    if model.get('pretrained') is not None:
        model['pretrained'] = None
    if model.get('teacher_ckpt') is not None:  # LAD's ResNet teacher
        model['teacher_ckpt'] = None


def read_model(name):
    """The model dict of the shipped config ``toolbox/relative/path.py``."""
    from mmengine.config import Config
    toolbox, rel = name.split('/', 1)
    cfg = Config.fromfile(osp.join(config_root(toolbox), rel))
    return cfg.model.to_dict()


def _key(toolbox, model):
    return json.dumps([toolbox, model['backbone'], model.get('type')],
                      sort_keys=True, default=repr)


def scan():
    """Read every shipped config and plan the sweep.

    Returns:
        dict: ``scanned`` (number of configs read), ``resnet_family`` (name
        -> the name of the entry that stands for it), ``entries`` (the
        de-duplicated names, ordered by backbone), ``scopes`` (entry -> the
        toolbox whose registry builds it: the config's default scope),
        ``unreadable`` (name -> error of the configs mmengine cannot read). A name is ``toolbox/relative/path.py``.
    """
    from mmengine.config import Config
    scanned, stands_for, unreadable, first = 0, {}, {}, {}
    scopes, backbones = {}, {}
    for toolbox in TOOLBOXES:
        _register(toolbox)
        root = config_root(toolbox)
        for path in sorted(glob.glob(osp.join(root, '**', '*.py'),
                                     recursive=True)):
            rel = osp.relpath(path, root)
            if rel.startswith('_base_'):
                continue  # fragments, read through the configs using them
            name = f'{toolbox}/{rel}'
            scanned += 1
            try:
                cfg = Config.fromfile(path)
            except Exception as e:  # the toolbox's own broken configs
                unreadable[name] = f'{type(e).__name__}: {e}'
                continue
            model = cfg.get('model')
            if not (isinstance(model, dict)
                    and _is_resnet_family(model.get('backbone'))):
                continue
            model = model.to_dict()
            # e.g. mmpretrain's detection benchmarks are mmdet configs
            scopes[name] = cfg.get('default_scope') or toolbox
            # A failure of its own (by name) or of a rule must not stand
            # for the configs that share its backbone and model type.
            failure = listed_failure(name, model)
            key = (_key(scopes[name], model), None if failure is None else
                   name if name in EXPECTED_FAILURES else failure.reason)
            stands_for[name] = first.setdefault(key, name)
            backbones[name] = json.dumps(
                [scopes[name], original(model)['backbone']], sort_keys=True)
    # ordered by backbone: a chunk's configs share few backbones
    entries = sorted(set(stands_for.values()),
                     key=lambda name: (backbones[name], name))
    return dict(scanned=scanned, resnet_family=stands_for, entries=entries,
                scopes={name: scopes[name] for name in entries},
                unreadable=unreadable)


def _scan_cache_path():
    with open(__file__, 'rb') as f:
        source = f.read()
    key = json.dumps([{d: version(d) for d in DISTRIBUTIONS},
                      [config_root(t) for t in TOOLBOXES],
                      hashlib.sha256(source).hexdigest()])
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return osp.join(tempfile.gettempdir(),
                    f'res2net_mm-toolbox-scan-{digest}.json')


@functools.lru_cache(maxsize=None)
def sweep_plan():
    """:func:`scan`, cached in this process and in a file shared by the
    test processes (which take turns: one scans, the others read)."""
    path = _scan_cache_path()
    with open(path + '.lock', 'a') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            with open(path) as f:
                return json.load(f)
        except (OSError, ValueError):
            pass  # absent or cut short: scan again
        plan = scan()
        tmp = f'{path}.{os.getpid()}.tmp'
        with open(tmp, 'w') as f:
            json.dump(plan, f)
        os.replace(tmp, path)
        return plan


def swapped(model):
    """The model config with only the backbone type changed (and the
    checkpoints that cannot be downloaded dropped)."""
    model = copy.deepcopy(model)
    model['backbone']['type'] = SWAPPED_TYPE
    _drop_checkpoints(model)
    return model


def original(model):
    """The model config as the toolbox wrote it, less the checkpoints."""
    model = copy.deepcopy(model)
    _drop_checkpoints(model)
    return model


def build(toolbox, model_cfg):
    """Build through the toolbox's own registry, in its default scope.

    The working folder is the toolbox's ``.mim``, which mirrors its source
    checkout (``configs/``, ``tools/``): some configs name other configs by
    a path relative to it (mmdet's LD names its teacher's config).
    """
    from mmengine.config import ConfigDict
    from mmengine.registry import DefaultScope
    _register(toolbox)
    with DefaultScope.overwrite_default_scope(toolbox), \
            contextlib.chdir(osp.dirname(config_root(toolbox))):
        # ConfigDict: the toolboxes read their sub-configs as attributes
        return _registry(toolbox).build(ConfigDict(copy.deepcopy(model_cfg)))


# (height, width) of the input where SIZE does not fit the model: mmdet's
# ReID pools an 8 x 4 map at 1/32 (its pipeline resizes to 256 x 128).
IMAGE_SIZE = {'BaseReID': (256, 128)}


def _image(model_type):
    height, width = IMAGE_SIZE.get(model_type, (SIZE, SIZE))
    gen = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (3, height, width), generator=gen,
                         dtype=torch.uint8)


def _data_samples(toolbox, image):
    """Data samples with the image's meta data, as a toolbox's preprocessor
    expects them (some of mmdet's and mmseg's read them at test time)."""
    shape = tuple(image.shape[1:])
    meta = dict(img_shape=shape, ori_shape=shape)
    if toolbox == 'mmdet':
        from mmdet.structures import DetDataSample
        return [DetDataSample(metainfo=dict(meta, scale_factor=(1., 1.)))]
    if toolbox == 'mmseg':
        from mmseg.structures import SegDataSample
        return [SegDataSample(metainfo=meta)]
    return None


def _preprocessed(toolbox, model):
    """One image through the model's own data preprocessor, as a batch."""
    image = _image(type(model).__name__)
    kind = type(model.data_preprocessor).__name__
    if kind == 'SelfSupDataPreprocessor':
        # a list of views, each a batch; data samples are optional
        data = dict(inputs=[image[None]], data_samples=None)
        return model.data_preprocessor(data, False)['inputs'][0]
    if kind == 'TrackDataPreprocessor':
        # a video, (frames, C, H, W); its samples would be TrackDataSamples
        data = dict(inputs=[image[None]], data_samples=None)
    else:
        data = dict(inputs=[image],
                    data_samples=_data_samples(toolbox, image))
    inputs = model.data_preprocessor(data, False)['inputs']
    if inputs.dim() == 5:
        inputs = inputs.flatten(0, 1)  # frames as a batch, as the VIS models
    return inputs


def _shapes(outputs):
    return [tuple(o.shape) for o in outputs]


@torch.no_grad()
def features(toolbox, model):
    """Run the backbone and neck of ``model`` (eval mode) on one small image
    through its data preprocessor.

    Returns:
        tuple: The input tensor and the shapes of the backbone's outputs.
    """
    model.eval()
    inputs = _preprocessed(toolbox, model)
    seen = []
    hook = model.backbone.register_forward_hook(
        lambda module, args, outputs: seen.append(_shapes(outputs)))
    try:
        if hasattr(model, 'extract_feat'):
            model.extract_feat(inputs)
        else:  # mmdet's video instance segmentors: the backbone alone
            model.backbone(inputs)
    finally:
        hook.remove()
    return inputs, seen[0]


def runs_whole_model(toolbox, model):
    """Whether the tensor mode of the toolbox takes the inputs alone: not
    mmdet's (it needs data samples) nor a self-supervised model's (it is
    ``extract_feat``)."""
    return toolbox != 'mmdet' and 'selfsup' not in type(model).__module__


@torch.no_grad()
def whole_model(model, inputs):
    model(inputs, mode='tensor')


@functools.lru_cache(maxsize=None)
def original_backbone_shapes(toolbox, backbone_json, input_shape):
    """Output shapes of the toolbox's own backbone, once per backbone dict
    and input shape in a test process (a chunk's configs share few
    backbones)."""
    backbone = build(toolbox, json.loads(backbone_json))
    backbone.eval()
    with torch.no_grad():
        return _shapes(backbone(torch.zeros(input_shape)))


def check_swapped(toolbox, model):
    """Build and run the swapped config; its backbone's outputs must have
    the shapes of the original backbone's.

    Returns:
        str: What ran: ``'whole model'`` or ``'backbone and neck'``.
    """
    built = build(toolbox, swapped(model))
    inputs, ours = features(toolbox, built)
    expected = original_backbone_shapes(
        toolbox, json.dumps(original(model)['backbone'], sort_keys=True),
        tuple(inputs.shape))
    assert ours == expected, f'feature shapes {ours} != {expected}'
    if not runs_whole_model(toolbox, built):
        return 'backbone and neck'
    error = error_of(whole_model, built, inputs)
    if error is None:
        return 'whole model'
    # Some heads' tensor mode needs data samples (mmseg's MaskFormer heads)
    # or is broken (mmseg's PointRend): it must fail the same way with the
    # original backbone.
    their_model = build(toolbox, original(model))
    their_model.eval()
    theirs = error_of(whole_model, their_model, inputs)
    assert theirs == error, (
        f'tensor mode: {error}; with the original backbone: {theirs}')
    return 'backbone and neck'


def check_original(toolbox, model):
    features(toolbox, build(toolbox, original(model)))


def error_of(check, *args):
    """``'ExceptionType: message'`` of ``check(*args)``, or None."""
    try:
        check(*args)
    except Exception as e:
        return f'{type(e).__name__}: {e}'
    return None


def sweep_entry(name, toolbox):
    """Check one entry.

    Returns:
        tuple[str, str | None]: What ran (or the listed reason it fails),
        and what is wrong (None: as expected).
    """
    model = read_model(name)
    failure = expected_failure(name, model)
    ran = []
    error = error_of(lambda: ran.append(check_swapped(toolbox, model)))
    if failure is None:
        return (ran[0] if ran else 'error'), (
            None if error is None else f'{name}: {error}')
    outcome = f'fails: {failure.reason}'
    if error is None:
        return outcome, (f'{name} works now: drop it from the expected '
                         f'failures ({failure.reason})')
    if failure.error not in error:
        return outcome, f'{name}: expected {failure.error!r}, got: {error}'
    theirs = error_of(check_original, toolbox, model)
    if failure.toolbox_fault and theirs != error:
        return outcome, (f'{name}: listed as not Res2Net\'s fault, but the '
                         f'original config gives {theirs!r}, not {error!r}')
    if not failure.toolbox_fault and theirs is not None:
        return outcome, (f'{name}: listed as Res2Net\'s limit, but the '
                         f'original config fails too: {theirs}')
    return outcome, None


def test_unreadable_configs_are_the_known_ones():
    plan = sweep_plan()
    print(f"toolbox configs: {plan['scanned']} read, "
          f"{len(plan['resnet_family'])} with a ResNet-family backbone, "
          f"{len(plan['entries'])} entries after de-duplication")
    assert set(plan['unreadable']) == set(UNREADABLE)


def test_expected_failures_are_entries():
    entries = set(sweep_plan()['entries'])
    stale = [name for name in EXPECTED_FAILURES if name not in entries]
    assert not stale, f'not ResNet-family configs (any more): {stale}'


@pytest.mark.parametrize('name', REPRESENTATIVE)
def test_the_issue_configs_are_swept_and_work(name):
    stands_for = sweep_plan()['resnet_family']
    assert name in stands_for, f'{name} has no ResNet-family backbone'
    entry = stands_for[name]
    for config in {name, entry}:
        assert expected_failure(config, read_model(config)) is None, config


@pytest.mark.parametrize('chunk', range(CHUNKS))
def test_swapped_configs_work_or_fail_as_listed(chunk):
    plan = sweep_plan()
    entries = plan['entries']
    size = -(-len(entries) // CHUNKS)
    names = entries[chunk * size:(chunk + 1) * size]
    outcomes, problems = Counter(), []
    for name in names:
        outcome, problem = sweep_entry(name, plan['scopes'][name])
        outcomes[outcome] += 1
        if problem is not None:
            problems.append(problem)
    print(f'chunk {chunk}: {len(names)} entries: {dict(outcomes)}')
    assert not problems, '\n'.join(problems)
