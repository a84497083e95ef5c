"""Training checkpoints load with weights_only=True; other pickles stay refused.

The checkpoint content is built with mmengine's own objects, the way its Runner
saves them (message hub of HistoryBuffers, numpy scalars in meta, Counter
milestones of a MultiStepLR state, numpy RNG state). The files are written by
fresh interpreters so that the allow-list of this process does not leak in.
"""
import os.path as osp
import pickle
import subprocess
import sys
import textwrap

import pytest
import torch

from res2net_mm.engine import allow_training_checkpoints

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

WRITE = textwrap.dedent('''
    import sys, collections
    import numpy as np, torch
    from mmengine.logging import MessageHub
    if sys.argv[2] == 'project':
        from res2net_mm.engine import allow_training_checkpoints
        allow_training_checkpoints()
    if sys.argv[2] == 'imported':  # a toolbox's own tools/train.py
        import res2net_mm
    hub = MessageHub.get_instance('ckpt-test')
    for i in range(3):
        hub.update_scalar('train/loss', 1.0 / (i + 1))
    hub.update_info('iter', 3)
    ckpt = dict(
        meta=dict(seed=np.int64(7), epoch=1, iter=3,
                  best=np.float32(0.5)),
        state_dict=dict(w=torch.ones(2)),
        message_hub=hub.state_dict(),
        param_schedulers=[dict(milestones=collections.Counter([30, 60]))],
        rng_state=dict(numpy=np.random.get_state()))
    torch.save(ckpt, sys.argv[1])
''')


def _write(path, mode):
    subprocess.run([sys.executable, '-c', WRITE, str(path), mode],
                   cwd=REPO, check=True, timeout=300)


def test_plain_mmengine_checkpoint_is_refused(tmp_path):
    """The problem: mmengine 0.10.7 checkpoints under torch >= 2.6."""
    path = tmp_path / 'plain.pth'
    _write(path, 'plain')
    allow_training_checkpoints()
    # HistoryBuffer pickles its statistics functions through builtins.getattr,
    # which must stay refused.
    with pytest.raises(pickle.UnpicklingError, match='getattr'):
        torch.load(path, weights_only=True)


def test_project_checkpoint_loads_with_weights_only(tmp_path):
    path = tmp_path / 'project.pth'
    _write(path, 'project')
    allow_training_checkpoints()
    ckpt = torch.load(path, weights_only=True)
    buf = ckpt['message_hub']['log_scalars']['train/loss']
    assert buf.current() == pytest.approx(1 / 3)
    assert buf.mean() == pytest.approx((1 + 1 / 2 + 1 / 3) / 3)
    assert ckpt['meta']['seed'] == 7
    assert ckpt['param_schedulers'][0]['milestones'][30] == 1
    assert ckpt['rng_state']['numpy'][1].shape == (624, )


def test_arbitrary_globals_still_refused(tmp_path):
    """An allow-list, not weights_only=False: code in a file is not run."""

    class Evil:

        def __reduce__(self):
            return (subprocess.call, (['touch', str(tmp_path / 'pwned')], ))

    path = tmp_path / 'evil.pth'
    torch.save({'x': Evil()}, path)
    allow_training_checkpoints()
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    assert not (tmp_path / 'pwned').exists()


READ_IMPORTED = textwrap.dedent('''
    import copy, sys
    import torch
    import res2net_mm  # what a toolbox config's res2net_mm.* type does
    ckpt = torch.load(sys.argv[1], weights_only=True)
    buf = ckpt['message_hub']['log_scalars']['train/loss']
    assert type(buf).__name__ == 'HistoryBuffer'
    assert type(copy.deepcopy(buf)) is type(buf)
    print(buf.current(), buf.mean(), int(ckpt['meta']['seed']),
          float(ckpt['meta']['best']))
''')


def test_checkpoints_of_plain_runners_in_an_importing_process(tmp_path):
    """The toolboxes' own tools import res2net_mm through their config:
    what such a process writes loads in another such process with
    weights_only=True, whatever numpy arrays it holds (not the RNG state:
    allowing numpy arrays is for the project's own, older checkpoints)."""
    path = tmp_path / 'imported.pth'
    _write(path, 'imported')
    out = subprocess.run([sys.executable, '-c', READ_IMPORTED, str(path)],
                         cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode != 0 and '_reconstruct' in out.stderr, (
        'the numpy RNG state array must still need the explicit allow-list')
    ckpt = torch.load(path, weights_only=False)
    del ckpt['rng_state']
    torch.save(ckpt, path)
    out = subprocess.run([sys.executable, '-c', READ_IMPORTED, str(path)],
                         cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    current, mean, seed, best = out.stdout.split()
    assert float(current) == pytest.approx(1 / 3)
    assert float(mean) == pytest.approx((1 + 1 / 2 + 1 / 3) / 3)
    assert (int(seed), float(best)) == (7, 0.5)
