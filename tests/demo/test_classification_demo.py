"""The classification demo, shortened: it prepares real data, learns, reports.

The full demo (30 epochs) reaches >= 95% top-1; 3 epochs must already be far
above the 10% of chance, and every promised artefact must exist.
"""
import json
import os
import os.path as osp
import subprocess
import sys

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def test_shortened_demo_learns(tmp_path):
    work_dir = tmp_path / 'work'
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.run(
        [
            sys.executable,
            osp.join(REPO, 'tools', 'demo', 'classification.py'),
            '--max-epochs', '3', '--work-dir',
            str(work_dir), '--data-root',
            str(tmp_path / 'digits')
        ],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    # progress was shown: the four steps and the training log lines
    for step in ('[1/4]', '[2/4]', '[3/4]', '[4/4]'):
        assert step in out
    assert 'Epoch(train) [3]' in out

    with open(work_dir / 'demo_result.json') as f:
        result = json.load(f)
    top1 = result['metrics']['accuracy/top1']
    assert top1 >= 60, f'top-1 {top1:.1f}% after 3 epochs (chance: 10%)'
    assert f'held-out accuracy/top1: {top1:.2f}' in out
    assert osp.isfile(result['checkpoint'])
    assert result['checkpoint'].endswith('epoch_3.pth')
    with open(result['curves'], 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    assert f'curves:       {result["curves"]}' in out
    # the data was written as an ImageNet-style folder
    assert osp.isfile(tmp_path / 'digits' / 'meta' / 'train.txt')
