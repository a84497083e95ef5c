"""The README's Inference section runs as printed.

Its python blocks (between ``<!-- inference:start -->`` and
``<!-- inference:end -->``) run one after the other in a fresh interpreter, in a
folder laid out like a clone after ``make demo`` and an ImageNet training: the
paths they name are links to the tiny checkpoints our tools wrote for this test
folder, to its data and to the clone's configs.
"""
import os
import re

from tests.test_readme import README, between
from tests.tools.toolhelp import REPO

from .utils import NAMED_MODEL, run_python


def _python_blocks(text):
    return re.findall(r'```python\n(.*?)```', text, flags=re.S)


def _link(src, dst):
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    os.symlink(src, dst)


def test_inference_section_runs(tmp_path, cls_checkpoint, det_checkpoint,
                                named_checkpoint, digits, shapes):
    blocks = _python_blocks(between(README, 'inference'))
    assert len(blocks) == 3
    code = '\n'.join(blocks)
    for api in ('ImageClassificationInferencer', 'get_model',
                'inference_model', 'DetInferencer', 'init_detector'):
        assert f'{api}(' in code, api
    _link(os.path.join(REPO, 'configs'), str(tmp_path / 'configs'))
    _link(digits, str(tmp_path / 'data' / 'digits'))
    _link(shapes, str(tmp_path / 'data' / 'synthetic_shapes'))
    for name, ckpt in (('demo_digits/epoch_12.pth', cls_checkpoint),
                       ('demo_detection/epoch_5.pth', det_checkpoint),
                       (f'{NAMED_MODEL}/epoch_100.pth', named_checkpoint)):
        _link(ckpt, str(tmp_path / 'work_dirs' / name))
    # the blocks' own prints, then a marker line for run_python
    out = run_python(code + "\nprint('{\"ran\": true}')\n", cwd=str(tmp_path))
    assert out == {'ran': True}
