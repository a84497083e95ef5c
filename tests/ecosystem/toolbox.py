"""Run the toolboxes' OWN tools on their OWN configs with the backbone swapped.

A case names a config shipped in an OpenMMLab wheel (``<pkg>/.mim/configs``).
:func:`write_tiny_config` writes a small config that ``_base_``s that file and
overrides only

- the backbone's ``type`` (``'res2net_mm.Res2Net'``), plus dropping the ResNet
  checkpoint it would download (``init_cfg`` in mmdet, ``model.pretrained`` in
  mmseg): the rest of the backbone dict stays as the toolbox wrote it;
- the data: roots, annotation files and image folders of the tiny sets the
  tests make, smaller image scales, batch size, one process (no workers);
- the schedule (2 training iterations, no validation during training), the
  logging interval, checkpoints without the optimizer state, and
  keep-a-few-boxes test settings for detectors (random weights after 2
  iterations score below mmdet's usual threshold).

:func:`run_tool` then runs ``<pkg>/.mim/tools/train.py`` or ``test.py`` in a
subprocess, as a user would.
"""
import importlib
import math
import os
import os.path as osp
import pprint
import re
import subprocess
import sys
from dataclasses import dataclass

from tests.cfgutils import plain
from tests.tools.toolhelp import tool_env

SWAPPED_TYPE = 'res2net_mm.Res2Net'
# A parameter only a Res2Net block has (a ResNet block has ``conv2``): its
# presence in the trained checkpoint shows that our backbone was trained.
RES2NET_KEY = 'backbone.layer1.0.convs.0.weight'

DET_SCALE = (128, 128)
SEG_CROP = (64, 64)
SEG_SCALE = (128, 128)
CLS_SIZE = 32  # the digits' image side


@dataclass(frozen=True)
class Case:
    """One toolbox config to train and test with the toolbox's tools.

    Args:
        name (str): Test id.
        package (str): The toolbox's import name (``mmdet``, ``mmseg``,
            ``mmpretrain``).
        config (str): Path under ``<package>/.mim/configs``.
        task (str): ``'det'``, ``'seg'`` or ``'cls'``: which tiny set.
        metric (str): A key the test log must report.
        saved_keys (tuple[str]): Parameters the trained checkpoint must hold.
            Defaults to a Res2Net-only parameter.
    """
    name: str
    package: str
    config: str
    task: str
    metric: str
    saved_keys: tuple = (RES2NET_KEY, )

    @property
    def config_path(self) -> str:
        return mim_path(self.package, 'configs', self.config)

    def tool(self, script: str) -> str:
        return mim_path(self.package, 'tools', script)


CASES = (
    Case('faster-rcnn', 'mmdet', 'faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py',
         'det', 'coco/bbox_mAP'),
    Case('mask-rcnn-caffe', 'mmdet',
         'mask_rcnn/mask-rcnn_r50-caffe_fpn_1x_coco.py', 'det',
         'coco/segm_mAP'),
    Case('retinanet', 'mmdet', 'retinanet/retinanet_r50_fpn_1x_coco.py', 'det',
         'coco/bbox_mAP'),
    # mmcv's compiled deformable convs in the 3x3 convs of stages 2-4
    Case('faster-rcnn-dcn', 'mmdet',
         'dcn/faster-rcnn_r50-dconv-c3-c5_fpn_1x_coco.py', 'det',
         'coco/bbox_mAP',
         (RES2NET_KEY, 'backbone.layer2.0.convs.0.conv_offset.weight')),
    Case('resnet50-in1k', 'mmpretrain', 'resnet/resnet50_8xb32_in1k.py', 'cls',
         'accuracy/top1'),
    Case('deeplabv3', 'mmseg',
         'deeplabv3/deeplabv3_r50-d8_4xb2-40k_cityscapes-512x1024.py', 'seg',
         'mIoU'),
    Case('pspnet', 'mmseg',
         'pspnet/pspnet_r50-d8_4xb2-40k_cityscapes-512x1024.py', 'seg',
         'mIoU'),
)


def mim_path(package: str, *parts: str) -> str:
    """Path of a file a toolbox wheel ships under ``<package>/.mim``."""
    root = osp.dirname(importlib.import_module(package).__file__)
    return osp.join(root, '.mim', *parts)


# Per transform type: the keys that set an image size, and their tiny value.
def _scales(task):
    if task == 'det':
        return {'Resize': {'scale': DET_SCALE}}
    if task == 'seg':
        return {'RandomResize': {'scale': SEG_SCALE},
                'RandomCrop': {'crop_size': SEG_CROP},
                'Resize': {'scale': SEG_SCALE}}
    return {'RandomResizedCrop': {'scale': CLS_SIZE},
            'ResizeEdge': {'scale': CLS_SIZE},
            'CenterCrop': {'crop_size': CLS_SIZE}}


def shrink_pipeline(pipeline, task):
    """The pipeline with every image size set to the tiny one.

    Only the size keys change; a transform that sets a size this helper does
    not know raises, so that a new config cannot silently run at full size.
    """
    sizes = _scales(task)
    out = []
    for t in plain(pipeline):
        t = dict(t)
        if t['type'] in sizes:
            t.update(sizes[t['type']])
        elif any(k in t for k in ('scale', 'crop_size', 'img_scale')):
            raise AssertionError(f'no tiny size for {t["type"]}: {t}')
        out.append(t)
    return out


def _loader(cfg_loader, task, batch_size, dataset):
    dataset['pipeline'] = shrink_pipeline(cfg_loader.dataset.pipeline, task)
    return dict(batch_size=batch_size, num_workers=0,
                persistent_workers=False, dataset=dataset)


def _det_overrides(cfg, data_root):
    test_cfg = cfg.model.test_cfg
    # two-stage detectors keep the final boxes' settings under ``rcnn``
    head_key = 'rcnn' if 'rcnn' in test_cfg else None
    keep_boxes = dict(score_thr=0.0, max_per_img=10)
    ann_val = osp.join(data_root, 'annotations', 'instances_val.json')
    over = dict(
        model=dict(
            backbone=dict(type=SWAPPED_TYPE, init_cfg=None),
            test_cfg={head_key: keep_boxes} if head_key else keep_boxes),
        train_cfg=dict(max_epochs=1),
        test_evaluator=dict(ann_file=ann_val))
    for key, split, batch in (('train_dataloader', 'train', 1),
                              ('test_dataloader', 'val', 1)):
        over[key] = _loader(
            cfg[key], 'det', batch,
            dict(data_root=data_root,
                 ann_file=f'annotations/instances_{split}.json',
                 data_prefix=dict(img=f'{split}/')))
    return over


def _seg_overrides(cfg, data_root):
    over = dict(
        # mmseg passes ``model.pretrained`` on to the backbone's init
        model=dict(backbone=dict(type=SWAPPED_TYPE), pretrained=None,
                   data_preprocessor=dict(size=SEG_CROP)),
        train_cfg=dict(max_iters=2))
    for key, split, batch in (('train_dataloader', 'train', 2),
                              ('test_dataloader', 'val', 1)):
        # The config's CityscapesDataset reads the tiny set with PNG
        # suffixes: its 19 classes stay, so do the heads' 19 outputs (the
        # tiny set's labels 0-4 are the first five of them).
        over[key] = _loader(
            cfg[key], 'seg', batch,
            dict(data_root=data_root, img_suffix='.png', seg_map_suffix='.png',
                 data_prefix=dict(img_path=f'img_dir/{split}',
                                  seg_map_path=f'ann_dir/{split}')))
    return over


def _cls_overrides(cfg, data_root):
    # The digits folder has ImageNet's layout (train/, val/, meta/*.txt):
    # the config's ImageNet dataset reads it with its 1000 classes.
    # BatchNorm needs 2 samples at layer 4's 1x1 output: batch 2, 4 images.
    over = dict(model=dict(backbone=dict(type=SWAPPED_TYPE)),
                train_cfg=dict(max_epochs=1))
    for key, images in (('train_dataloader', 4), ('test_dataloader', 2)):
        over[key] = _loader(cfg[key], 'cls', 2,
                            dict(data_root=data_root, indices=images))
    return over


def write_tiny_config(case: Case, data_root: str, out_dir: str) -> str:
    """Write the override config for ``case`` and return its path.

    Args:
        case (Case): The toolbox config.
        data_root (str): Root of the tiny set for ``case.task``.
        out_dir (str): Folder for the file.

    Returns:
        str: Path of a config whose ``_base_`` is the toolbox's own file.
    """
    from mmengine.config import Config
    cfg = Config.fromfile(case.config_path)
    build = dict(det=_det_overrides, seg=_seg_overrides,
                 cls=_cls_overrides)[case.task]
    over = build(cfg, data_root)
    # mmengine's loops validate after the last epoch / iteration whatever
    # the interval: no validation, tools/test.py evaluates.
    over.update(val_cfg=None, val_dataloader=None, val_evaluator=None)
    # A log line per iteration; the optimizer state (as large as the model)
    # is not needed to test.
    over['default_hooks'] = dict(logger=dict(interval=1),
                                 checkpoint=dict(save_optimizer=False))
    lines = [
        f'# {case.name}: the toolbox\'s own config, backbone type swapped,',
        '# on a tiny data set (written by tests/ecosystem/toolbox.py).',
        f'_base_ = [{case.config_path!r}]',
    ]
    for key, value in over.items():
        text = pprint.pformat(value, width=76, sort_dicts=False)
        lines.append(f'{key} = {text}')
    path = osp.join(out_dir, f'{case.name}_tiny.py')
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    os.replace(tmp, path)
    return path


def run_tool(case: Case, script: str, args, cwd: str, timeout: float = 300):
    """Run ``python <package>/.mim/tools/<script> *args``; fail on error.

    Returns:
        str: stdout and stderr together (mmengine logs to both).
    """
    cmd = [sys.executable, case.tool(script), *args]
    # One thread; PYTHONPATH makes this checkout the res2net_mm that the
    # registry's ``locations`` import when the config names
    # ``res2net_mm.Res2Net``.
    proc = subprocess.run(cmd, cwd=cwd, env=tool_env(), capture_output=True,
                          text=True, timeout=timeout)
    log = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise AssertionError(
            f'{case.package}\'s tools/{script} failed with exit code '
            f'{proc.returncode} on {case.config}:\n{" ".join(cmd)}\n'
            f'{log[-6000:]}')
    return log


_METRIC = r'(-?\d+(?:\.\d+)?|nan)'


def logged_test_metric(log: str, metric: str):
    """The value of ``metric`` in the test summary, and the test iterations.

    mmengine's LoggerHook ends a test with one line
    ``... Epoch(test) [N/N]  <metric>: <value> ...`` (``Iter(test)`` after an
    iteration-based training loop).

    Returns:
        tuple[float, int]: The metric and N.
    """
    pattern = re.compile(r'(?:Epoch|Iter)\(test\) \[(\d+)/(\d+)\].*?'
                         + re.escape(metric) + r': ' + _METRIC)
    found = pattern.findall(log)
    if not found:
        raise AssertionError(f'no {metric} in the test log:\n{log[-3000:]}')
    done, total, value = found[-1]
    assert done == total, found[-1]
    return float(value), int(total)


def train_losses(log: str):
    """(iteration, loss) of every training log line (logger interval 1)."""
    pattern = re.compile(r'(?:Epoch\(train\)\s*\[\d+\]|Iter\(train\))\s*'
                         r'\[\s*(\d+)/\s*\d+\].*?\bloss: ' + _METRIC)
    return [(int(i), float(v)) for i, v in pattern.findall(log)]


def is_finite(value: float) -> bool:
    return not (math.isnan(value) or math.isinf(value))
