"""tools/analysis_tools/get_flops.py on detection and segmentation configs
(ours and a toolbox's own), checked against independent counts: the backbone
alone, and the neck and heads from their layer sizes. The classification
configs' figures are checked against the variant table in
tests/configs/test_res2net_configs.py."""
import json
import os.path as osp

import mmdet
import pytest
from mmengine.config import Config
from toolhelp import REPO

from res2net_mm import VARIANTS, Res2Net, build_classifier
from res2net_mm.utils import count_macs
from tests.models.utils import load_tool

FASTER_RCNN = osp.join(REPO, 'configs', 'detection',
                       'faster-rcnn_res2net50-v1b_fpn_1x_coco.py')
DEEPLAB = osp.join(REPO, 'configs', 'segmentation', 'demo',
                   'deeplabv3plus_res2net101-v1b-d8_1xb4-2k_synthetic-shapes-'
                   '128x128.py')
MMDET_FASTER_RCNN = osp.join(osp.dirname(mmdet.__file__), '.mim', 'configs',
                             'faster_rcnn', 'faster-rcnn_r50_fpn_1x_coco.py')
SIZE = 128  # detectors: strides 4 ... 64 give 32 ... 2 px maps


@pytest.fixture(scope='module')
def tool():
    return load_tool('analysis_tools/get_flops.py')


def backbone_alone(cfg, size):
    """The config's backbone built on its own, counted on its own."""
    kwargs = {k: v for k, v in cfg.model.backbone.items() if k != 'type'}
    assert cfg.model.backbone.type == 'res2net_mm.Res2Net'
    return count_macs(Res2Net(**kwargs), (1, 3, size, size))


def fpn_macs(in_channels, size, out=256):
    """mmdet's FPN on C2..C5 (strides 4..32): 1x1 laterals and 3x3 outputs
    (the extra max-pooled level has no conv)."""
    maps = [(size // s)**2 for s in (4, 8, 16, 32)]
    return sum(px * (c * out + out * out * 9)
               for px, c in zip(maps, in_channels))


def rpn_macs(size, channels=256, anchors=3):
    """A 3x3 conv and the 1x1 objectness / box convs on 5 levels."""
    pixels = sum((size // s)**2 for s in (4, 8, 16, 32, 64))
    return pixels * channels * (channels * 9 + anchors + 4 * anchors)


def roi_macs(rois, classes=80):
    """Shared2FCBBoxHead: 256x7x7 -> 1024 -> 1024, classes + 1 scores and
    4 x classes boxes, per RoI."""
    return rois * 1024 * (256 * 49 + 1024 + classes + 1 + 4 * classes)


def check_faster_rcnn(r, cfg):
    parts = r['by_module']
    assert r['kind'] == 'detector' and r['shape'] == [SIZE, SIZE]
    assert parts['backbone']['macs'] == backbone_alone(cfg, SIZE)
    assert parts['neck']['macs'] == fpn_macs(cfg.model.neck.in_channels, SIZE)
    assert parts['rpn_head']['macs'] == rpn_macs(SIZE)
    [rois] = r['rois']
    assert 0 < rois <= 1000  # test_cfg.rpn.max_per_img
    assert parts['roi_head']['macs'] == roi_macs(rois)
    assert r['macs'] == sum(p['macs'] for p in parts.values())
    assert r['macs_all'] > r['macs']
    assert r['params'] == sum(p['params'] for p in parts.values())


def test_detection_config(tool):
    r = tool.complexity(FASTER_RCNN, (SIZE, SIZE))
    assert r['model'] == 'FasterRCNN'
    check_faster_rcnn(r, Config.fromfile(FASTER_RCNN))


def test_toolbox_own_config_with_the_backbone_swapped(tool):
    """mmdet's own Faster R-CNN R-50 config, only ``backbone.type`` changed
    (it keeps mmdet's ResNet arguments: style, norm_eval, init_cfg ...)."""
    swap = {'model.backbone.type': 'res2net_mm.Res2Net'}
    r = tool.complexity(MMDET_FASTER_RCNN, (SIZE, SIZE), swap)
    cfg = Config.fromfile(MMDET_FASTER_RCNN)
    cfg.merge_from_dict(swap)
    assert cfg.model.backbone.style == 'pytorch'
    check_faster_rcnn(r, cfg)


def test_segmentation_config(tool):
    size = 64
    r = tool.complexity(DEEPLAB, (size, size))
    cfg = Config.fromfile(DEEPLAB)
    parts = r['by_module']
    assert r['kind'] == 'segmentor' and r['model'] == 'EncoderDecoder'
    assert parts['backbone']['macs'] == backbone_alone(cfg, size)
    assert parts['decode_head']['macs'] > 0
    # training only: its parameters are listed, it does not run
    assert parts['auxiliary_head']['macs'] == 0
    assert parts['auxiliary_head']['params'] > 0
    assert r['macs'] == parts['backbone']['macs'] + parts['decode_head'][
        'macs']
    assert r['params'] == sum(p['params'] for p in parts.values())


def test_classifier_equals_the_variant_counter(tool):
    """The classifier path counts what the variant table counts."""
    path = osp.join(REPO, 'configs', 'res2net', 'res2net50_8xb32_in1k.py')
    r = tool.complexity(path, (64, 64))
    arch = Config.fromfile(path).model.backbone.arch
    assert r['kind'] == 'classifier'
    assert r['params'] == VARIANTS[arch].params
    assert r['macs'] == count_macs(build_classifier(arch), (1, 3, 64, 64))


def test_json_and_default_shape(tool, capsys):
    """Without --shape a segmentor is counted at its crop size (128x128 in
    this demo config). The script itself runs in
    tests/configs/test_res2net_configs.py."""
    assert tool.main([DEEPLAB, '--json']) == 0
    [line] = [ln for ln in capsys.readouterr().out.splitlines()
              if ln.startswith('{')]
    r = json.loads(line)
    assert r['shape'] == [128, 128] and r['kind'] == 'segmentor'
    assert r['macs'] < r['macs_all'] and r['by_operator']


def test_bad_configs_give_one_line_errors(tool, tmp_path, capsys):
    no_model = osp.join(REPO, 'configs', '_base_', 'datasets',
                        'imagenet_bs32.py')
    unknown_type = tmp_path / 'unknown_type.py'
    unknown_type.write_text(f'_base_ = {FASTER_RCNN!r}\n'
                            "model = dict(type='NoSuchDetector')\n")
    not_a_model = tmp_path / 'backbone_only.py'
    not_a_model.write_text("default_scope = 'mmdet'\n"
                           "model = dict(type='res2net_mm.Res2Net', "
                           'depth=26)\n')
    missing = tmp_path / 'missing.py'
    code = tool.main([no_model, str(unknown_type), str(not_a_model),
                      str(missing)])
    out, err = capsys.readouterr()
    assert code == 1 and out == ''
    errors = [ln for ln in err.splitlines() if ln.startswith('error: ')]
    assert len(errors) == 4, err
    for path, why in zip([no_model, unknown_type, not_a_model, missing], [
            'has no `model` dict', "cannot build model type 'NoSuchDetector'",
            'unknown model type Res2Net', 'cannot read the config'
    ]):
        assert any(str(path) in ln and why in ln for ln in errors), (why, err)
    assert 'Traceback' not in err
