"""The toolboxes' OWN tools/train.py and tools/test.py run their OWN configs
with only the backbone type swapped to ``res2net_mm.Res2Net``.

For each config of a representative subset (mmdet Faster R-CNN, caffe-style
Mask R-CNN, RetinaNet and a DCN Faster R-CNN; mmpretrain's ResNet-50
classifier; mmseg's DeepLabV3 and PSPNet R-50-D8), the toolbox's
``<pkg>/.mim/tools/train.py`` trains 2 iterations on a tiny set and writes a
checkpoint, then its ``<pkg>/.mim/tools/test.py`` loads that checkpoint in a
new process and evaluates 1 batch. The configs are the wheels' own files;
tests/ecosystem/toolbox.py overrides data, schedule and the backbone's
``type`` (and its unreachable pretrained checkpoint) only.
"""
import os.path as osp
import shutil
import zipfile

import pytest
from mmengine.config import Config

from .toolbox import (CASES, SWAPPED_TYPE, Case, is_finite, logged_test_metric,
                      run_tool, train_losses, write_tiny_config)

CASE_IDS = [c.name for c in CASES]


@pytest.fixture(scope='module')
def tiny_sets(tmp_path_factory):
    """The tiny data sets, one per task, in the layout each config reads."""
    from mmdet.datasets import CocoDataset

    from res2net_mm.datasets.digits import prepare_digits
    from res2net_mm.datasets.synthetic_coco import generate_synthetic_coco
    from res2net_mm.datasets.synthetic_seg import generate_synthetic_seg

    root = tmp_path_factory.mktemp('tiny_sets')
    # COCO's 80 names: the configs' 80-class heads and CocoMetric read the
    # files unchanged (the shapes are the first four categories).
    generate_synthetic_coco(
        str(root / 'coco'), num_train=2, num_val=1, image_size=128,
        objects_per_image=(2, 3), object_size=(24, 56),
        class_names=CocoDataset.METAINFO['classes'])
    generate_synthetic_seg(str(root / 'seg'), num_train=2, num_val=1,
                           image_size=128)
    prepare_digits(str(root / 'digits'), size=32)
    return dict(det=str(root / 'coco'), seg=str(root / 'seg'),
                cls=str(root / 'digits'))


def test_subset_covers_the_issue():
    """The configs the issue names, read from the installed wheels."""
    assert {c.package for c in CASES} == {'mmdet', 'mmpretrain', 'mmseg'}
    names = {c.name for c in CASES}
    assert {'faster-rcnn', 'mask-rcnn-caffe', 'retinanet', 'faster-rcnn-dcn',
            'resnet50-in1k', 'deeplabv3', 'pspnet'} == names
    for case in CASES:
        assert osp.isfile(case.config_path), case.config_path
        for script in ('train.py', 'test.py'):
            assert osp.isfile(case.tool(script)), case.tool(script)


def _backbone(cfg):
    return cfg.model.backbone.to_dict()


@pytest.mark.parametrize('case', CASES, ids=CASE_IDS)
def test_override_changes_only_the_backbone_type(case, tiny_sets, tmp_path):
    """The tiny config's backbone is the toolbox's, except ``type`` and the
    download it cannot reach; the rest of the model too (test-time box
    settings aside), so the tools below prove the swap, not a rewrite."""
    theirs = Config.fromfile(case.config_path)
    ours = Config.fromfile(
        write_tiny_config(case, tiny_sets[case.task], str(tmp_path)))
    assert theirs.model.backbone.type in ('ResNet', 'ResNetV1c')
    expected = dict(_backbone(theirs), type=SWAPPED_TYPE)
    if case.package == 'mmdet':
        assert theirs.model.backbone.init_cfg.type == 'Pretrained'
        expected['init_cfg'] = None
    assert _backbone(ours) == expected
    if case.package == 'mmseg':
        assert theirs.model.pretrained.startswith('open-mmlab://')
        assert ours.model.pretrained is None
        assert case.config.split('/')[-1].startswith(('deeplabv3_r50-d8',
                                                      'pspnet_r50-d8'))
        assert expected['style'] == 'pytorch' and expected['contract_dilation']
    if case.name == 'mask-rcnn-caffe':
        assert expected['style'] == 'caffe'
    if case.name == 'faster-rcnn-dcn':
        assert expected['dcn']['type'] == 'DCN'
    # Besides the backbone only what the tiny run needs: mmseg's crop size,
    # and detectors keeping low-score boxes (random weights).
    theirs_model, ours_model = theirs.model.to_dict(), ours.model.to_dict()
    for model in (theirs_model, ours_model):
        del model['backbone']
        model.pop('pretrained', None)
        if case.package == 'mmseg':
            del model['data_preprocessor']['size']
        if case.package == 'mmdet':
            test_cfg = model['test_cfg'].get('rcnn', model['test_cfg'])
            del test_cfg['score_thr'], test_cfg['max_per_img']
    assert ours_model == theirs_model


def _pickled_bytes(path):
    """The pickle of a torch checkpoint (its parameter names are strings in
    it), read without unpickling anything."""
    with zipfile.ZipFile(path) as zf:
        return zf.read(next(n for n in zf.namelist()
                            if n.endswith('/data.pkl')))


@pytest.mark.parametrize('case', CASES, ids=CASE_IDS)
def test_toolbox_train_then_test(case: Case, tiny_sets, tmp_path):
    cfg_path = write_tiny_config(case, tiny_sets[case.task], str(tmp_path))
    work_dir = tmp_path / 'work'
    try:
        log = run_tool(case, 'train.py', [cfg_path, '--work-dir',
                                          str(work_dir)], cwd=str(tmp_path))
        losses = train_losses(log)
        assert [i for i, _ in losses] == [1, 2], log[-3000:]
        assert all(is_finite(v) for _, v in losses), losses

        with open(work_dir / 'last_checkpoint') as f:
            ckpt = f.read().strip()
        expected = 'iter_2.pth' if case.task == 'seg' else 'epoch_1.pth'
        assert osp.basename(ckpt) == expected and osp.isfile(ckpt)
        # our backbone was trained: its Res2Net-only parameters are saved
        pickled = _pickled_bytes(ckpt)
        for key in case.saved_keys:
            assert key.encode() in pickled, key

        log = run_tool(case, 'test.py',
                       [cfg_path, ckpt, '--work-dir',
                        str(tmp_path / 'test')], cwd=str(tmp_path))
        # every trained parameter went back into the model (mmengine only
        # warns about missing or unexpected keys)
        assert 'do not match exactly' not in log, log[-3000:]
        value, iterations = logged_test_metric(log, case.metric)
        assert iterations == 1
        assert is_finite(value), (case.metric, value)
    finally:
        # the checkpoints are 100-200 MB each
        shutil.rmtree(work_dir, ignore_errors=True)
