"""native -> format -> native is bit-exact, and detection reports the truth."""
import pytest
import torch

from res2net_mm import Res2Net, Res2NetClassifier
from res2net_mm.converters import (CheckpointError, detect_format,
                                   detect_variant, load_checkpoint_any,
                                   save_checkpoint_as, to_native)
from res2net_mm.converters.detect import FormatDetectionError

from .utils import TINY_V1, TINY_V1B, assert_same_state, randomize

ARCHS = {
    'v1': TINY_V1,
    'v1b': TINY_V1B,
    'res2next': dict(TINY_V1, groups=2, scales=3),
    'se': dict(TINY_V1, se_ratio=8),
}


def native_state(arch, num_classes=None):
    """A random native state dict (with ``fc.*`` when num_classes is set)."""
    if num_classes is None:
        return randomize(Res2Net(**arch)).state_dict()
    model = randomize(Res2NetClassifier(num_classes=num_classes, **arch))
    state = {k[len('backbone.'):]: v for k, v in model.state_dict().items()
             if k.startswith('backbone.')}
    state.update({k: v for k, v in model.state_dict().items()
                  if k.startswith('fc.')})
    return state


@pytest.mark.parametrize('fmt,expected_format', [
    ('native', 'native'), ('timm', 'timm'), ('mmpretrain', 'mmpretrain'),
    ('safetensors', 'native'), ('mindcv', 'mindcv')])
@pytest.mark.parametrize('arch', ['v1', 'v1b', 'res2next'])
def test_round_trip_bit_exact(tmp_path, fmt, expected_format, arch):
    state = native_state(ARCHS[arch], num_classes=10)
    path = tmp_path / f'w.{fmt}'
    save_checkpoint_as(state, path, fmt)
    back, info = load_checkpoint_any(path)
    assert info['format'] == expected_format and info['detected']
    if fmt == 'mindcv':
        # MindSpore keeps no BN step counters: they come back as 0.
        assert info['added'] and all(
            int(back[k]) == 0 for k in info['added'])
        state = {k: (back[k] if k in info['added'] else v)
                 for k, v in state.items()}
    assert_same_state(back, state)
    variant = detect_variant(back)
    assert variant['num_classes'] == 10
    for key in ('depth', 'base_width', 'deep_stem', 'avg_down'):
        assert variant[key] == ARCHS[arch].get(key, dict(
            deep_stem=False, avg_down=False).get(key))


@pytest.mark.parametrize('arch', ['v1b'])
def test_round_trip_mmdet_bit_exact(tmp_path, arch):
    """mmdet weights are backbone-only (the fc is dropped on the way out)."""
    state = native_state(ARCHS[arch], num_classes=10)
    path = tmp_path / 'w.pth'
    _, written = save_checkpoint_as(state, path, 'mmdet')
    assert 'stem.0.weight' in written and 'stem.7.running_var' in written
    assert not any(k.startswith('fc.') for k in written)
    back, info = load_checkpoint_any(path)
    assert info['format'] == 'mmdet'
    assert_same_state(back, {k: v for k, v in state.items()
                             if not k.startswith('fc.')})


def test_mmdet_refuses_v1_stem(tmp_path):
    with pytest.raises(ValueError, match='deep'):
        save_checkpoint_as(native_state(TINY_V1), tmp_path / 'w.pth', 'mmdet')
    assert list(tmp_path.iterdir()) == []


def test_se_round_trip_and_detection(tmp_path):
    state = native_state(ARCHS['se'])
    save_checkpoint_as(state, tmp_path / 'w.pth', 'native')
    back, info = load_checkpoint_any(tmp_path / 'w.pth')
    assert_same_state(back, state)
    assert info['variant']['se_ratio'] == 8


@pytest.mark.parametrize('arch,expected', [
    (dict(depth=50, base_width=26, scales=4), ['res2net50_26w_4s',
                                               'res2net50']),
    (dict(depth=101, base_width=26, scales=4, deep_stem=True, avg_down=True),
     ['res2net101_v1b_26w_4s', 'res2net101_v1b']),
    (dict(depth=50, base_width=4, scales=4, groups=8), ['res2next50']),
    (dict(depth=50, base_width=14, scales=8), ['res2net50_14w_8s']),
])
def test_detect_named_variants(arch, expected):
    with torch.device('meta'):
        state = Res2Net(**arch).state_dict()
    variant = detect_variant(state)
    assert variant['variants'] == expected
    assert variant['num_classes'] is None


def test_detect_format_of_each_naming():
    state = native_state(TINY_V1B, num_classes=5)
    from res2net_mm.converters.keymaps import (add_prefix, to_mindcv,
                                               to_mmdet, to_mmpretrain)
    assert detect_format(state) == 'timm'
    assert detect_format(to_mmpretrain(state)) == 'mmpretrain'
    assert detect_format(to_mmpretrain(state, with_prefix=False)) == \
        'mmpretrain'
    assert detect_format(to_mmdet(state)) == 'mmdet'
    detector = to_mmdet(state, with_prefix=True)
    detector['neck.lateral_convs.0.conv.weight'] = torch.zeros(1)
    assert detect_format(detector) == 'mmdet'
    native, report = to_native(detector)
    assert report['dropped'] == {
        'neck.lateral_convs.0.conv.weight':
        'detector/classifier part outside the backbone'}
    assert detect_format(to_mindcv(state)) == 'mindcv'
    assert detect_format(add_prefix(state, 'backbone.')) == 'mmpretrain'
    with pytest.raises(FormatDetectionError, match='no Res2Net'):
        detect_format({'encoder.weight': torch.zeros(1)})


def test_resnet_is_not_res2net():
    """A ResNet state dict has the same stem but no multi-scale convs."""
    import torchvision
    with torch.device('meta'):
        state = torchvision.models.resnet50().state_dict()
    with pytest.raises(FormatDetectionError, match='ResNet'):
        to_native(state)


def test_explicit_arch_and_format(tmp_path):
    """``arch=`` checks the weights key by key against the named variant;
    ``fmt=`` overrides the detection."""
    state = randomize(Res2Net(arch='res2net50_v1b')).state_dict()
    path = tmp_path / 'w.pth'
    torch.save({f'backbone.{k}': v for k, v in state.items()}, path)
    native, info = load_checkpoint_any(path, arch='res2net50_v1b')
    assert info['variant']['variants'] == ['res2net50_v1b_26w_4s',
                                           'res2net50_v1b']
    assert info['format'] == 'mmpretrain' and info['detected']
    assert_same_state(native, state)
    native, info = load_checkpoint_any(path, fmt='mmdet')
    assert info['format'] == 'mmdet' and not info['detected']
    assert_same_state(native, state)
    with pytest.raises(CheckpointError, match='avg_down: file True'):
        load_checkpoint_any(path, arch='res2net50_26w_4s')
    with pytest.raises(ValueError, match='unknown format'):
        load_checkpoint_any(path, fmt='caffe')
