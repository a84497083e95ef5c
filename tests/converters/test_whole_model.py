"""Any supported file as a whole model's state dict (what ``load_from``
converts): a detector given a backbone-only file, heads of another class
count, files already in the model's naming, bad weights."""
import pytest
import torch

from res2net_mm.converters import FROM_FORMAT, NonFiniteWeightsError
from res2net_mm.converters.whole_model import (ModelMismatchError,
                                               describe_model_load,
                                               find_res2net_model,
                                               in_model_naming,
                                               linear_head_prefix,
                                               to_model_state)

from .test_download import (OURS_TINY, TIMM_TINY, mmdet_detector,  # noqa
                            mmpretrain_file, timm_file)
from .utils import build_in_scope, randomize


def tiny_classifier(num_classes):
    return build_in_scope('mmpretrain', dict(
        type='ImageClassifier',
        backbone=dict(type='res2net_mm.Res2Net', out_indices=(3, ),
                      **OURS_TINY),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=num_classes,
                  in_channels=512)))


def test_detector_gets_the_backbone_of_a_classifier_file(timm_file):
    """A timm classifier file into a RetinaNet: the backbone is loaded, the
    classifier is dropped, the neck and heads stay at init and are named."""
    _, theirs = timm_file
    detector = mmdet_detector(dict(type='res2net_mm.Res2Net',
                                   out_indices=(0, 1, 2, 3), **OURS_TINY))
    target = find_res2net_model(detector)
    assert target is detector and linear_head_prefix(detector) is None
    model_state = detector.state_dict()
    assert not in_model_naming(theirs, model_state)
    state, report = to_model_state(theirs, model_state, None, 'timm.pth',
                                   num_stages=4)
    native = FROM_FORMAT['timm'](theirs)
    assert all(torch.equal(state['backbone.' + k], v)
               for k, v in native.items() if not k.startswith('fc.'))
    assert not any(k.startswith(('neck.', 'bbox_head.')) for k in state)
    missing, unexpected = detector.load_state_dict(state, strict=False)
    assert not unexpected
    assert set(missing) == set(report['kept_init'])
    line = describe_model_load(report, 'timm.pth', 'torch')
    assert '\n' not in line
    assert 'timm naming' in line and 'head none in the model' in line
    assert 'kept at init (not in the file): neck.* (' in line
    assert 'bbox_head.* (' in line
    assert report['dropped']['fc.weight'] == 'classifier not loaded'


def test_head_of_another_class_count_stays_at_init(timm_file):
    """MindCV's builders write 1001 classes; the converters guess no
    background row, so a 1001-class classifier does not go into a
    1000-class head (here 1000 vs 10)."""
    _, theirs = timm_file  # 1000 classes
    model = tiny_classifier(10)
    init_head = model.head.fc.weight.clone()
    state, report = to_model_state(theirs, model.state_dict(), 'head.fc.',
                                   'timm.pth', num_stages=4)
    assert 'head.fc.weight' not in state
    assert report['head'] == ('kept at init: the file\'s classifier has '
                              '1000 classes, the model\'s 10')
    model.load_state_dict(state, strict=False)
    assert torch.equal(model.head.fc.weight, init_head)

    same = tiny_classifier(1000)
    state, report = to_model_state(theirs, same.state_dict(), 'head.fc.',
                                   'timm.pth', num_stages=4)
    assert torch.equal(state['head.fc.weight'], theirs['fc.weight'])
    assert report['head'] == 'head.fc.* loaded (1000 classes)'


def test_files_in_the_model_naming_are_left_to_mmengine(mmpretrain_file):
    """mmpretrain's whole ImageClassifier (stem.N names the backbone renames
    itself) counts as the model's naming; its backbone-only form does not."""
    _, theirs = mmpretrain_file
    ours = build_in_scope('mmpretrain', dict(
        type='ImageClassifier',
        backbone=dict(type='res2net_mm.Res2Net', deep_stem=True,
                      avg_down=True, stem_channels=16, depth=50, scales=4,
                      base_width=4, base_channels=16),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=5, in_channels=512)))
    assert in_model_naming(theirs.state_dict(), ours.state_dict())
    backbone_only = theirs.backbone.state_dict()
    assert not in_model_naming(backbone_only, ours.state_dict())
    state, report = to_model_state(backbone_only, ours.state_dict(),
                                   'head.fc.', 'mmpretrain.pth', num_stages=4)
    assert report['format'] == 'mmpretrain'
    assert report['head'] == 'kept at init: the file has no classifier'
    ours.load_state_dict(state, strict=False)
    x = torch.rand(1, 3, 64, 64)
    ours.eval(), theirs.eval()
    with torch.no_grad():
        torch.testing.assert_close(ours.backbone(x), theirs.backbone(x),
                                   rtol=1e-4, atol=1e-5)


def test_bad_weights_load_nothing(timm_file):
    import timm
    _, theirs = timm_file
    model = tiny_classifier(1000)
    broken = dict(theirs)
    broken['layer2.0.conv1.weight'] = broken['layer2.0.conv1.weight'].clone()
    broken['layer2.0.conv1.weight'][0, 0] = float('nan')
    with pytest.raises(NonFiniteWeightsError, match='layer2.0.conv1.weight'):
        to_model_state(broken, model.state_dict(), 'head.fc.', 'nan.pth')
    other = randomize(timm.create_model(
        'res2net50_26w_4s', **dict(TIMM_TINY, base_width=26))).state_dict()
    with pytest.raises(ModelMismatchError) as e:
        to_model_state(other, model.state_dict(), 'head.fc.', 'other.pth')
    assert '\n' not in str(e.value)
    assert 'other.pth: the weights do not fit the model\'s backbone' in \
        str(e.value)
    with pytest.raises(Exception, match='no Res2Net weights'):
        to_model_state({'weight': torch.zeros(3)}, model.state_dict(),
                       'head.fc.', 'x.pth')
