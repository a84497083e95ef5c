"""Helpers for the tools tests: run the scripts as users do, on tiny data."""
import os
import os.path as osp
import subprocess
import sys

from tests.models.utils import free_port  # noqa: F401 (for the tools tests)

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO_CONFIG = osp.join(REPO, 'configs', 'demo',
                       'res2net26-tiny_1xb32_digits.py')


def tool_env(**extra):
    """Environment for a tool subprocess: this interpreter, one thread."""
    env = dict(os.environ)
    env.update(PYTHON=sys.executable, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    env['PYTHONPATH'] = os.pathsep.join(
        p for p in (REPO, osp.dirname(osp.abspath(__file__)),
                    env.get('PYTHONPATH')) if p)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_tool(args, timeout=300, env=None, check=True):
    """Run ``python tools/<script> args`` (or a shell script) from the repo."""
    if args[0].endswith('.sh'):
        cmd = ['bash', osp.join(REPO, 'tools', args[0]), *args[1:]]
    else:
        cmd = [sys.executable, osp.join(REPO, 'tools', args[0]), *args[1:]]
    proc = subprocess.run(
        cmd, cwd=REPO, env=env or tool_env(), capture_output=True,
        text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f'{" ".join(cmd)} failed ({proc.returncode}):\n'
                             f'{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}')
    return proc


def tiny_digits_opts(data_root, num_train=64, num_val=32, batch_size=16,
                     max_epochs=1):
    """--cfg-options that shrink the demo config to a few iterations."""
    opts = [
        f'train_cfg.max_epochs={max_epochs}',
        'train_cfg.val_interval=1',
        f'train_dataloader.batch_size={batch_size}',
        f'train_dataloader.dataset.indices={num_train}',
        f'val_dataloader.dataset.indices={num_val}',
        f'test_dataloader.dataset.indices={num_val}',
        'default_hooks.logger.interval=1',
        # constant lr: the demo's warm-up + cosine spans 30 epochs
        'param_scheduler=[]',
        'log_level=INFO',
    ]
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        opts.append(f'{loader}.dataset.data_root={data_root}')
    return opts


def load_checkpoint(path):
    """Load a training checkpoint the way the tools do (weights_only=True)."""
    import torch

    from res2net_mm.engine import allow_training_checkpoints
    allow_training_checkpoints()
    return torch.load(path, map_location='cpu', weights_only=True)
