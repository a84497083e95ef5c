"""slurm_train.sh / slurm_test.sh with a stand-in ``srun`` on CPU (gloo).

There is no Slurm here, so ``srun`` and ``scontrol`` are small stand-ins on PATH:
``srun`` records its options and starts ``--ntasks`` copies of the command with
the variables Slurm sets (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID,
SLURM_NODELIST); ``scontrol show hostname`` prints 127.0.0.1. The tools then
initialise distributed training from those variables (``--launcher slurm``).
"""
import json
import os
import os.path as osp
import stat
import sys

import pytest
from toolhelp import (DEMO_CONFIG, free_port, load_checkpoint, run_tool,
                      tiny_digits_opts, tool_env)

from res2net_mm.datasets import prepare_digits

FAKE_SRUN = '''#!{python}
import json, os, subprocess, sys
args = sys.argv[1:]
opts, i = [], 0
while i < len(args) and args[i].startswith('-'):
    takes_value = args[i] == '-p'
    opts += args[i:i + 1 + takes_value]
    i += 1 + takes_value
command = args[i:]
with open(os.environ['FAKE_SRUN_LOG'], 'w') as f:
    json.dump(dict(options=opts, command=command), f)
ntasks = int(next(o.split('=')[1] for o in opts if o.startswith('--ntasks=')))
procs = [
    subprocess.Popen(command, env=dict(
        os.environ, SLURM_PROCID=str(r), SLURM_NTASKS=str(ntasks),
        SLURM_LOCALID=str(r), SLURM_NODELIST='localhost'))
    for r in range(ntasks)
]
codes = [p.wait() for p in procs]
sys.exit(max(abs(c) for c in codes))
'''
FAKE_SCONTROL = '#!/bin/sh\necho 127.0.0.1\n'


@pytest.fixture
def fake_slurm(tmp_path):
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    for name, text in (('srun', FAKE_SRUN.format(python=sys.executable)),
                       ('scontrol', FAKE_SCONTROL)):
        path = bin_dir / name
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / 'srun.json'
    return dict(PATH=f'{bin_dir}{os.pathsep}{os.environ["PATH"]}',
                FAKE_SRUN_LOG=str(log)), log


def test_slurm_train_and_test(fake_slurm, tmp_path):
    env_vars, srun_log = fake_slurm
    data_root = str(tmp_path / 'digits')
    prepare_digits(data_root)
    opts = tiny_digits_opts(data_root) + ['env_cfg.dist_cfg.timeout=60']
    work_dir = str(tmp_path / 'work')
    env = tool_env(GPUS=2, GPUS_PER_NODE=2, CPUS_PER_TASK=1,
                   MASTER_PORT=free_port(), **env_vars)
    run_tool([
        'slurm_train.sh', 'dev', 'r2n-job', DEMO_CONFIG, work_dir,
        '--cfg-options', *opts
    ], env=env)
    with open(srun_log) as f:
        srun = json.load(f)
    assert srun['options'][:2] == ['-p', 'dev']
    for expected in ('--job-name=r2n-job', '--ntasks=2',
                     '--ntasks-per-node=2', '--gres=gpu:2',
                     '--cpus-per-task=1', '--kill-on-bad-exit=1'):
        assert expected in srun['options']
    assert '--launcher=slurm' in srun['command']
    assert f'--work-dir={work_dir}' in srun['command']
    ckpt = load_checkpoint(osp.join(work_dir, 'epoch_1.pth'))
    # 64 images / (2 tasks x 16) = 2 iterations
    assert ckpt['meta']['iter'] == 2
    logs = [
        osp.join(d, f) for d, _, fs in os.walk(work_dir) for f in fs
        if f.endswith('.log')
    ]
    with open(logs[0]) as f:
        text = f.read()
    assert 'Distributed launcher: slurm' in text and 'GPU number: 2' in text

    env['MASTER_PORT'] = str(free_port())
    proc = run_tool([
        'slurm_test.sh', 'dev', 'r2n-test', DEMO_CONFIG,
        osp.join(work_dir, 'epoch_1.pth'), '--work-dir',
        str(tmp_path / 'test'), '--cfg-options', *opts
    ], env=env)
    assert 'accuracy/top1' in proc.stdout + proc.stderr
