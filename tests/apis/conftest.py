"""Checkpoints written by our tools, shared by the tests of this folder.

Each is the output of a real ``tools/train.py`` (or ``tools/dist_train.sh``) run
of one or two iterations on tiny data; the tests then load them with the
toolboxes' own APIs in fresh processes.
"""
import os.path as osp

import pytest

from res2net_mm.datasets.synthetic_coco import SHAPES, generate_synthetic_coco
from tests.tools.toolhelp import (DEMO_CONFIG, free_port, run_tool,
                                  tiny_digits_opts, tool_env)

from .utils import DET_CONFIG, NAMED_CONFIG


@pytest.fixture(scope='package')
def digit_image(digits):
    with open(osp.join(digits, 'meta', 'val.txt')) as f:
        return osp.join(digits, 'val', f.readline().split()[0])


@pytest.fixture(scope='package')
def shapes(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('data') / 'synthetic_shapes')
    generate_synthetic_coco(root, num_train=2, num_val=1, class_names=SHAPES)
    return root


@pytest.fixture(scope='package')
def cls_checkpoint(digits, tmp_path_factory):
    """The demo classifier: 2 iterations and a validation (best checkpoint,
    best score in the message hub)."""
    work_dir = tmp_path_factory.mktemp('cls')
    run_tool([
        'train.py', DEMO_CONFIG, '--work-dir', str(work_dir),
        '--cfg-options', *tiny_digits_opts(digits, num_train=32, num_val=16)
    ])
    return str(work_dir / 'epoch_1.pth')


@pytest.fixture(scope='package')
def dist_checkpoint(digits, tmp_path_factory):
    """The demo classifier from 2 gloo processes (batch 16 each: 2 iterations)."""
    work_dir = tmp_path_factory.mktemp('dist')
    run_tool([
        'dist_train.sh', DEMO_CONFIG, '2', '--work-dir', str(work_dir),
        '--no-validate', '--cfg-options', *tiny_digits_opts(digits)
    ], env=tool_env(PORT=free_port()))
    return str(work_dir / 'epoch_1.pth')


@pytest.fixture(scope='package')
def det_checkpoint(shapes, tmp_path_factory):
    """The demo Mask R-CNN: one epoch of 2 images, batch 1."""
    work_dir = tmp_path_factory.mktemp('det')
    root = shapes + '/'
    opts = [f'{loader}.{key}' for loader in (
        'train_dataloader', 'val_dataloader', 'test_dataloader')
        for key in (f'dataset.data_root={root}', 'batch_size=1',
                    'num_workers=0', 'persistent_workers=False')]
    run_tool([
        'train.py', DET_CONFIG, '--work-dir', str(work_dir), '--no-validate',
        '--cfg-options', *opts, 'train_cfg.max_epochs=1',
        'default_hooks.checkpoint.interval=1', 'param_scheduler.0.end=2',
        'param_scheduler.1.end=1'
    ])
    return str(work_dir / 'epoch_1.pth')


@pytest.fixture(scope='package')
def named_checkpoint(digits, tmp_path_factory):
    """A full-size model of the model index (res2net50_8xb32_in1k, ImageNet's
    1000 classes), one iteration of 2 digits at 224 px."""
    work_dir = tmp_path_factory.mktemp('named')
    run_tool([
        'train.py', NAMED_CONFIG, '--work-dir', str(work_dir),
        '--no-validate', '--cfg-options', 'train_cfg.max_epochs=1',
        f'train_dataloader.dataset.data_root={digits}',
        'train_dataloader.dataset.indices=2', 'train_dataloader.batch_size=2',
        'train_dataloader.num_workers=0', 'default_hooks.logger.interval=1'
    ])
    return str(work_dir / 'epoch_1.pth')
