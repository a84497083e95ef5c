"""A run killed with SIGKILL mid-epoch and resumed ends with the same weights.

Deterministic mode, same seed, random augmentation (RandomResizedCrop) and a
warm-up + cosine schedule: run A trains uninterrupted; run B is killed as soon as
it has written an iteration checkpoint (in the middle of an epoch) and resumed
with ``--resume``. Both end with bit-identical weights, optimizer state and lr.
As a control, the same resume with mmengine's own EpochBasedTrainLoop (which
replays the interrupted epoch from its start) ends elsewhere.
"""
import os
import os.path as osp
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from toolhelp import (DEMO_CONFIG, REPO, load_checkpoint, run_tool, tool_env,
                      tiny_digits_opts)

from res2net_mm.datasets import prepare_digits

ITERS_PER_EPOCH = 12  # 96 images / batch 8
EPOCHS = 3
LAST = f'iter_{ITERS_PER_EPOCH * EPOCHS}.pth'


def _opts(data_root):
    opts = tiny_digits_opts(
        data_root, num_train=96, num_val=16, batch_size=8, max_epochs=EPOCHS)
    # tiny_digits_opts sets a constant lr; keep the demo's warm-up + cosine,
    # squeezed into 3 epochs, so that the schedulers' state is resumed too.
    return [o for o in opts if not o.startswith('param_scheduler=')] + [
        'param_scheduler.0.end=0.5',
        'param_scheduler.1.begin=0.5',
        f'param_scheduler.1.end={EPOCHS}',
        'randomness.seed=7',
        'randomness.deterministic=True',
        'default_hooks.checkpoint.by_epoch=False',
        'default_hooks.checkpoint.interval=5',
        'default_hooks.checkpoint.max_keep_ckpts=-1',
        'default_hooks.checkpoint.save_best=None',
    ]


def _train(work_dir, opts, *extra):
    return run_tool([
        'train.py', DEMO_CONFIG, '--work-dir', work_dir, *extra,
        '--cfg-options', *opts
    ])


def _train_until_checkpoint_then_kill(work_dir, opts):
    cmd = [
        sys.executable,
        osp.join(REPO, 'tools', 'train.py'), DEMO_CONFIG, '--work-dir',
        work_dir, '--cfg-options', *opts
    ]
    marker = osp.join(work_dir, 'last_checkpoint')
    os.makedirs(osp.dirname(work_dir), exist_ok=True)
    with open(osp.join(osp.dirname(work_dir), 'killed.log'), 'w') as log:
        proc = subprocess.Popen(
            cmd, cwd=REPO, env=tool_env(), stdout=log,
            stderr=subprocess.STDOUT)
        deadline = time.time() + 600
        while not osp.isfile(marker):
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                pytest.fail('training ended before writing a checkpoint')
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
    with open(marker) as f:
        return f.read().strip()


def _assert_same_state(a, b):
    assert a['meta']['iter'] == b['meta']['iter']
    assert a['state_dict'].keys() == b['state_dict'].keys()
    for k in a['state_dict']:
        assert torch.equal(a['state_dict'][k], b['state_dict'][k]), k
    sa, sb = a['optimizer']['state'], b['optimizer']['state']
    for k in sa:
        assert torch.equal(sa[k]['momentum_buffer'], sb[k]['momentum_buffer'])
    assert (a['optimizer']['param_groups'][0]['lr'] ==
            b['optimizer']['param_groups'][0]['lr'])


def _weights_differ(a, b):
    return any(not torch.equal(a['state_dict'][k], b['state_dict'][k])
               for k in a['state_dict'])


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(tmp_path):
    data_root = str(tmp_path / 'digits')
    prepare_digits(data_root)
    opts = _opts(data_root)

    ref_dir = str(tmp_path / 'uninterrupted')
    _train(ref_dir, opts)
    ref = load_checkpoint(osp.join(ref_dir, LAST))

    run_dir = str(tmp_path / 'killed' / 'work')
    resumed_from = _train_until_checkpoint_then_kill(run_dir, opts)
    assert not osp.isfile(osp.join(run_dir, LAST))
    saved = load_checkpoint(resumed_from)
    # killed in the middle of an epoch, not at its end
    assert saved['meta']['iter'] % ITERS_PER_EPOCH != 0
    control_dir = str(tmp_path / 'control')
    shutil.copytree(run_dir, control_dir)

    proc = _train(run_dir, opts, '--resume')
    out = proc.stdout + proc.stderr
    assert f'resumed epoch: {saved["meta"]["epoch"]}' in out
    assert 'Resuming in the middle of epoch' in out
    _assert_same_state(load_checkpoint(osp.join(run_dir, LAST)), ref)

    # Control: mmengine's loop replays the interrupted epoch from its start.
    # The checkpoint names the loop type in its config, so resume from a
    # copy with the stock loop.
    control_opts = opts + ['train_cfg.type=EpochBasedTrainLoop']
    run_tool([
        'train.py', DEMO_CONFIG, '--work-dir', control_dir, '--resume',
        osp.join(control_dir, osp.basename(resumed_from)), '--cfg-options',
        *control_opts
    ])
    last = max((f for f in os.listdir(control_dir) if f.startswith('iter_')),
               key=lambda f: int(f[len('iter_'):-len('.pth')]))
    control = load_checkpoint(osp.join(control_dir, last))
    assert _weights_differ(control, ref)
