"""dist_train.sh / dist_test.sh on CPU (gloo): 2 processes, 2 nodes, a dying rank.

Each run uses the demo config on 64 digits: 2 processes x batch 16 = 2
iterations per epoch.
"""
import glob
import os
import os.path as osp
import signal
import subprocess
import time

import pytest
from toolhelp import (DEMO_CONFIG, REPO, free_port, load_checkpoint, run_tool,
                      tiny_digits_opts, tool_env)

# DDP's warning when a gradient's strides differ from its bucket view's (made
# from the parameter's strides when DDP wraps the model): it then copies that
# gradient every step. The backbone's layout choice must not cause it.
GRAD_COPY_WARNING = 'Grad strides do not match bucket view strides'


def _assert_no_grad_copies(output):
    assert GRAD_COPY_WARNING not in output, output[
        max(0, output.index(GRAD_COPY_WARNING) - 200):][:1200]


def _opts(data_root, **kw):
    # a dead peer must fail the collective within seconds, not 30 minutes
    return tiny_digits_opts(data_root, **kw) + ['env_cfg.dist_cfg.timeout=30']


def _launch(script_args, env, log_file):
    """Start a launcher script; its output goes to ``log_file`` (a pipe could
    fill up and block it while the test waits)."""
    with open(log_file, 'w') as log:
        return subprocess.Popen(
            ['bash', osp.join(REPO, 'tools', script_args[0]),
             *script_args[1:]],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)  # one group: the test can end it whole


def _read(path):
    with open(path) as f:
        return f.read()


def _world_size_in_log(work_dir):
    logs = glob.glob(osp.join(work_dir, '2*_*', '2*_*.log'))
    assert logs, f'no log in {work_dir}'
    with open(logs[0]) as f:
        text = f.read()
    assert 'Distributed training: True' in text
    return int(text.split('GPU number: ')[1].split()[0])


def test_two_processes_train_and_test(digits, tmp_path):
    work_dir = str(tmp_path / 'work')
    port = free_port()
    proc = run_tool([
        'dist_train.sh', DEMO_CONFIG, '2', '--work-dir', work_dir,
        '--cfg-options', *_opts(digits, max_epochs=2)
    ], env=tool_env(PORT=port))
    _assert_no_grad_copies(proc.stdout + proc.stderr)
    assert _world_size_in_log(work_dir) == 2
    ckpt = load_checkpoint(osp.join(work_dir, 'epoch_2.pth'))
    # 64 images over 2 processes x 16 = 2 iterations per epoch
    assert ckpt['meta']['iter'] == 4
    # a DDP-wrapped model is saved without the 'module.' prefix
    assert all(not k.startswith('module.') for k in ckpt['state_dict'])

    test_dir = str(tmp_path / 'test')
    proc = run_tool([
        'dist_test.sh', DEMO_CONFIG,
        osp.join(work_dir, 'epoch_2.pth'), '2', '--work-dir', test_dir,
        '--cfg-options', *_opts(digits)
    ], env=tool_env(PORT=free_port()))
    assert 'accuracy/top1' in proc.stdout + proc.stderr
    assert _world_size_in_log(test_dir) == 2


def test_two_nodes_on_localhost(digits, tmp_path):
    """Two launches (NNODES=2, NODE_RANK=0/1) form one job of 2 processes."""
    work_dir = str(tmp_path / 'work')
    port = free_port()
    args = [
        'dist_train.sh', DEMO_CONFIG, '1', '--work-dir', work_dir,
        '--cfg-options', *_opts(digits)
    ]
    logs = [str(tmp_path / f'node{r}.log') for r in (0, 1)]
    nodes = [
        _launch(args, tool_env(NNODES=2, NODE_RANK=r, PORT=port,
                               MASTER_ADDR='127.0.0.1'), logs[r])
        for r in (0, 1)
    ]
    for node, log in zip(nodes, logs):
        assert node.wait(timeout=400) == 0, _read(log)[-4000:]
        _assert_no_grad_copies(_read(log))
    assert _world_size_in_log(work_dir) == 2
    assert load_checkpoint(osp.join(work_dir,
                                    'epoch_1.pth'))['meta']['iter'] == 2


def test_dying_rank_fails_the_job_quickly(digits, tmp_path):
    """Rank 1 (node 1) is SIGKILLed after its first iteration: both node
    launches exit non-zero within a minute instead of hanging."""
    config = tmp_path / 'kill_rank1.py'
    config.write_text(
        f"_base_ = [{DEMO_CONFIG!r}]\n"
        "custom_imports = dict(imports=['res2net_mm', 'res2net_mm.engine', "
        "'r2n_kill_hook'], allow_failed_imports=False)\n"
        "custom_hooks = [dict(type='KillRankHook', rank=1, after_iter=1)]\n")
    work_dir = str(tmp_path / 'work')
    port = free_port()
    args = [
        'dist_train.sh', str(config), '1', '--work-dir', work_dir,
        '--cfg-options', *_opts(digits, max_epochs=50)
    ]
    logs = [str(tmp_path / f'node{r}.log') for r in (0, 1)]
    nodes = [
        _launch(args, tool_env(NNODES=2, NODE_RANK=r, PORT=port,
                               MASTER_ADDR='127.0.0.1'), logs[r])
        for r in (0, 1)
    ]
    died = None
    deadline = time.time() + 400
    while any(n.poll() is None for n in nodes):
        if died is None and nodes[1].poll() is not None:
            died = time.time()
        if died is not None and time.time() - died > 60:
            break
        if time.time() > deadline:
            break
        time.sleep(0.2)
    try:
        assert died is not None, 'node 1 did not fail'
        assert all(n.poll() is not None for n in nodes), \
            'the surviving node still runs a minute after its peer died'
        assert nodes[0].returncode != 0 and nodes[1].returncode != 0
    finally:
        for n in nodes:
            if n.poll() is None:
                os.killpg(n.pid, signal.SIGKILL)
                n.wait()
    # the job was training (rank 0 logged iteration 1) when rank 1 died
    assert 'Epoch(train)' in _read(logs[0])
