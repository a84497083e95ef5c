"""The detection demo, shortened: the Res2Net Mask R-CNN learns the shapes.

Runs tools/demo/detection.py end to end (data, tools/train.py, tools/test.py,
visualisation) on a small slice and a few epochs; the full demo (make demo)
reaches bbox mAP >= 0.5.
"""
import json
import os
import subprocess
import sys

from PIL import Image

from .utils import REPO

# A slice and schedule that take about a minute on two cores.
SHORT = ['--num-train', '128', '--num-val', '24', '--epochs', '6',
         '--num-vis', '2', '--min-map', '0']


def test_short_demo_learns(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.run(
        [sys.executable, 'tools/demo/detection.py', *SHORT, '--data-root',
         str(tmp_path / 'data'), '--work-dir', str(tmp_path / 'work')],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(tmp_path / 'work' / 'demo_metrics.json') as f:
        result = json.load(f)
    metrics = result['metrics']
    # An untrained detector scores 0.0 here; a learning one far more.
    assert metrics['coco/bbox_mAP_50'] > 0.2, metrics
    assert metrics['coco/bbox_mAP'] > 0.05, metrics
    assert 'coco/segm_mAP' in metrics
    with Image.open(result['png']) as img:
        assert img.format == 'PNG' and min(img.size) > 100
    assert '[demo] bbox mAP (0.5:0.95)' in proc.stdout
