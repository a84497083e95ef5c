"""Checkpoints of our tools load in the toolboxes' own inference APIs.

``tools/train.py`` and ``tools/dist_train.sh`` write checkpoints; fresh
interpreters whose code never imports res2net_mm (the configs' ``res2net_mm.*``
types pull it in through mmengine's registry) load them with torch's default
``weights_only=True`` in mmpretrain's ``ImageClassificationInferencer`` and
``get_model``, mmdet's ``DetInferencer`` and ``init_detector``, and mmengine's
``load_checkpoint``, and predict. The only addition to torch's allow-list there
are mmengine's ``HistoryBuffer`` class and numpy scalars of plain dtypes
(``import res2net_mm`` adds them, for the checkpoints that the toolboxes' own
tools write; see tests/ecosystem/test_toolbox_tools.py).
"""
import copyreg
import os.path as osp
import subprocess

import torch
from mmengine.logging import HistoryBuffer

from res2net_mm.engine import allow_mmengine_checkpoints, from_portable
from res2net_mm.engine.checkpoint import (numpy_scalar_globals,
                                          rebuild_history_buffer)
from res2net_mm.datasets.synthetic_coco import SHAPES
from tests.tools.toolhelp import (DEMO_CONFIG, load_checkpoint, run_tool,
                                  tiny_digits_opts)

from .utils import DET_CONFIG, run_python, unsafe_globals

IMPORT_ALLOWS = sorted(
    repr(g) for g in [HistoryBuffer, *numpy_scalar_globals()])
# What was added to torch's weights_only allow-list beyond torch's own entries.
ADDED_SAFE_GLOBALS = '''
    def added_safe_globals():
        return [repr(g) for g in torch.serialization.get_safe_globals()
                if not getattr(g, '__module__', '').startswith('torch')]
'''

CLASSIFY = ADDED_SAFE_GLOBALS + '''
    import json, pickle, sys
    import torch
    assert 'res2net_mm' not in sys.modules
    from mmengine.runner import load_checkpoint
    from mmpretrain import ImageClassificationInferencer, get_model

    config, image, legacy, evil, *checkpoints = sys.argv[1:]
    out = {}
    for ckpt in checkpoints:
        inferencer = ImageClassificationInferencer(
            model=config, pretrained=ckpt, device='cpu')
        pred = inferencer(image)[0]
        # get_model is what inference_model and the Inferencer build on
        model = get_model(config, pretrained=ckpt, device='cpu')
        # mmengine's own loader into a freshly built model
        fresh = get_model(config)
        load_checkpoint(fresh, ckpt, map_location='cpu', strict=True)
        saved = torch.load(ckpt)['state_dict']
        same = all(torch.equal(fresh.state_dict()[k], v)
                   and torch.equal(model.state_dict()[k], v)
                   for k, v in saved.items())
        out[ckpt] = dict(same_weights=same, classes=model._dataset_meta['classes'],
                         pred_class=pred['pred_class'],
                         scores=len(pred['pred_scores']))
    # refused, not run: a pickle with code, and (with torch's defaults) the
    # checkpoints of our tools before portable checkpoints
    for key, path in (('evil', evil), ('legacy', legacy)):
        try:
            ImageClassificationInferencer(model=config, pretrained=path)
        except pickle.UnpicklingError as e:
            out[key] = str(e)
    out['imported'] = 'res2net_mm' in sys.modules
    out['allow_list'] = added_safe_globals()
    print(json.dumps(out))
'''

DETECT = ADDED_SAFE_GLOBALS + '''
    import json, sys
    import torch
    assert 'res2net_mm' not in sys.modules
    from mmengine.runner import load_checkpoint
    from mmdet.apis import DetInferencer, inference_detector, init_detector
    from mmdet.registry import MODELS
    from mmengine.config import Config

    config, image, ckpt = sys.argv[1:]
    inferencer = DetInferencer(model=config, weights=ckpt, device='cpu')
    pred = inferencer(image)['predictions'][0]
    model = init_detector(config, ckpt, device='cpu')
    sample = inference_detector(model, image)
    cfg = Config.fromfile(config)
    fresh = MODELS.build(cfg.model)
    load_checkpoint(fresh, ckpt, map_location='cpu', strict=True)
    saved = torch.load(ckpt)['state_dict']
    same = all(torch.equal(fresh.state_dict()[k], v)
               and torch.equal(model.state_dict()[k], v)
               for k, v in saved.items())
    print(json.dumps(dict(
        keys=sorted(pred), same_weights=same,
        classes=list(model.dataset_meta['classes']),
        boxes=list(sample.pred_instances.bboxes.shape),
        backbone=type(model.backbone).__module__,
        allow_list=added_safe_globals())))
'''


def _make_legacy(portable, legacy):
    """A checkpoint as the tools wrote them before: HistoryBuffers pickled
    through rebuild_history_buffer, numpy arrays and scalars as they are."""
    # the copyreg reducer those tools used
    copyreg.pickle(
        HistoryBuffer, lambda b: (rebuild_history_buffer, (
            b._log_history, b._count_history, b.max_length)))
    try:
        torch.save(from_portable(torch.load(portable, weights_only=True)),
                   legacy)
    finally:
        allow_mmengine_checkpoints()


def _evil(tmp_path):

    class Evil:

        def __reduce__(self):
            return (subprocess.call, (['touch', str(tmp_path / 'pwned')], ))

    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'meta': Evil()}, path)
    return path


def test_tools_write_only_default_allowed_globals(cls_checkpoint,
                                                  dist_checkpoint,
                                                  det_checkpoint,
                                                  named_checkpoint):
    best = osp.join(osp.dirname(cls_checkpoint),
                    'best_accuracy_top1_epoch_1.pth')
    paths = [cls_checkpoint, best, dist_checkpoint, det_checkpoint,
             named_checkpoint]
    assert unsafe_globals(*paths) == {p: [] for p in paths}


def test_classifier_checkpoints_load_in_mmpretrain(cls_checkpoint,
                                                   dist_checkpoint,
                                                   digit_image, tmp_path):
    legacy = tmp_path / 'legacy.pth'
    _make_legacy(cls_checkpoint, legacy)
    out = run_python(CLASSIFY, DEMO_CONFIG, digit_image, legacy,
                     _evil(tmp_path), cls_checkpoint, dist_checkpoint)
    for ckpt in (cls_checkpoint, dist_checkpoint):
        assert out[ckpt]['same_weights'], ckpt
        # the checkpoint's own dataset meta reached the model
        assert out[ckpt]['classes'] == [str(i) for i in range(10)]
        assert out[ckpt]['pred_class'] in out[ckpt]['classes']
        assert out[ckpt]['scores'] == 10
    assert 'Unsupported global' in out['evil']
    assert not (tmp_path / 'pwned').exists()
    # the problem of issue 13, as older tools' checkpoints still show it
    assert 'res2net_mm.engine.checkpoint.rebuild_history_buffer' in \
        out['legacy']
    assert out['imported'] and sorted(out['allow_list']) == IMPORT_ALLOWS


def test_detector_checkpoint_loads_in_mmdet(det_checkpoint, shapes):
    image = osp.join(shapes, 'val', '000000.png')
    out = run_python(DETECT, DET_CONFIG, image, det_checkpoint)
    assert {'labels', 'scores', 'bboxes'} <= set(out['keys'])
    assert out['same_weights']
    assert out['classes'] == list(SHAPES)
    assert out['boxes'][1:] == [4]
    assert out['backbone'].startswith('res2net_mm.')
    assert sorted(out['allow_list']) == IMPORT_ALLOWS


def _loss_history(path):
    hub = from_portable(load_checkpoint(path)['message_hub'])
    return list(hub['log_scalars']['train/loss']._log_history)


def test_resume_restores_the_message_hub(cls_checkpoint, digits, tmp_path):
    """From a portable and from an older (legacy) checkpoint, the tools
    resume with the message hub's history: the next checkpoint's loss
    history continues the saved one."""
    legacy = tmp_path / 'legacy.pth'
    _make_legacy(cls_checkpoint, legacy)
    assert 'res2net_mm.engine.checkpoint.rebuild_history_buffer' in \
        unsafe_globals(legacy)[str(legacy)]
    saved = _loss_history(cls_checkpoint)
    assert len(saved) == 2
    for name, ckpt in (('portable', cls_checkpoint), ('legacy', legacy)):
        work_dir = tmp_path / name
        proc = run_tool([
            'train.py', DEMO_CONFIG, '--work-dir', str(work_dir), '--resume',
            str(ckpt), '--no-validate', '--cfg-options',
            *tiny_digits_opts(digits, num_train=32, max_epochs=2)
        ])
        out = proc.stdout + proc.stderr
        assert 'resumed epoch: 1, iter: 2' in out
        assert 'not HistoryBuffer' not in out
        history = _loss_history(work_dir / 'epoch_2.pth')
        assert len(history) == 4 and history[:2] == saved, name
