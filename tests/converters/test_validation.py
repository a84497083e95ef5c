"""Weights are validated before anything is written or loaded: every tensor's
shape against the architecture (detected, or ``--arch``) and every value
finite (NaN / infinity refused unless allowed). Each refusal leaves nothing
behind: no output file, no temporary file, an untouched model."""
import os

import numpy as np
import pytest
import torch

from res2net_mm import Res2Net
from res2net_mm.converters import (NonFiniteWeightsError, TensorShapeError,
                                   WeightMismatchError, check_shapes,
                                   load_checkpoint_any, save_checkpoint_as,
                                   validate_native)

from .test_library_files import small_detector_cfg
from .utils import TINY_V1, build_in_scope, mindcv_net, randomize, run_tool

BAD_KEY = 'layer2.1.conv1.weight'  # TINY_V1: (32, 128, 1, 1)
NAN_KEY = 'layer3.0.bns.1.running_var'


def tiny_state():
    return dict(randomize(Res2Net(**TINY_V1)).state_dict())


def poisoned(state, shape=False, nan=False, inf=False):
    """A copy with one wrongly shaped tensor and / or NaN / inf values."""
    state = dict(state)
    if shape:
        state[BAD_KEY] = torch.randn(3, 5, 1, 1)
    if nan:
        state[NAN_KEY] = torch.full_like(state[NAN_KEY], float('nan'))
    if inf:
        weight = state['conv1.weight'].clone()
        weight[0, 0, 0, :2] = torch.tensor([float('inf'), -float('inf')])
        state['conv1.weight'] = weight
    return state


def write_timm_file(folder, state):
    """torch.save of a plain state dict (the official / timm layout)."""
    folder.mkdir(exist_ok=True)
    path = folder / 'src.pth'
    torch.save(state, path)
    return path


def assert_nothing_written(folder, src, dst):
    assert not dst.exists()
    assert sorted(os.listdir(folder)) == [src.name]  # no temporary file


@pytest.mark.parametrize('fmt', ['native', 'timm', 'safetensors', 'mindcv'])
def test_cli_refuses_a_wrongly_shaped_tensor(tmp_path, fmt):
    src = write_timm_file(tmp_path / 'in', poisoned(tiny_state(), shape=True))
    dst = tmp_path / 'in' / 'out.bin'
    result = run_tool('convert.py', src, dst, '--to', fmt)
    assert result.returncode == 1
    assert str(src) in result.stderr
    assert f'{BAD_KEY}: checkpoint (3, 5, 1, 1) vs expected (32, 128, 1, 1)' \
        in result.stderr
    assert_nothing_written(tmp_path / 'in', src, dst)


@pytest.mark.parametrize('problem', ['nan', 'inf'])
def test_cli_refuses_nonfinite_values_unless_allowed(tmp_path, problem):
    state = poisoned(tiny_state(), **{problem: True})
    src = write_timm_file(tmp_path / 'in', state)
    dst = tmp_path / 'in' / 'out.pth'
    result = run_tool('convert.py', src, dst)
    assert result.returncode == 1
    expected = (f'{NAN_KEY}: 16 NaN and 0 infinite of 16 values'
                if problem == 'nan' else
                'conv1.weight: 0 NaN and 2 infinite of 2352 values')
    assert str(src) in result.stderr and expected in result.stderr
    assert '--allow-nonfinite' in result.stderr
    assert_nothing_written(tmp_path / 'in', src, dst)

    result = run_tool('convert.py', src, dst, '--allow-nonfinite')
    assert result.returncode == 0, result.stderr
    assert 'kept 1 tensor with NaN or infinite values' in result.stdout
    native, info = load_checkpoint_any(dst, allow_nonfinite=True)
    key = NAN_KEY if problem == 'nan' else 'conv1.weight'
    assert torch.equal(native[key].isfinite(), state[key].isfinite())
    assert list(info['nonfinite']) == [key]


def test_cli_refuses_the_issue_reproduction(tmp_path):
    """One wrongly shaped tensor and one full of NaNs: before, both were
    written out as if they were fine. Shapes are checked first, so even
    --allow-nonfinite does not let it through."""
    src = write_timm_file(tmp_path / 'in',
                          poisoned(tiny_state(), shape=True, nan=True))
    dst = tmp_path / 'in' / 'out.pth'
    for extra in ([], ['--allow-nonfinite']):
        result = run_tool('convert.py', src, dst, *extra)
        assert result.returncode == 1
        assert BAD_KEY in result.stderr and '(3, 5, 1, 1)' in result.stderr
        assert_nothing_written(tmp_path / 'in', src, dst)


def _init_cfg_model(path, **extra):
    return Res2Net(**TINY_V1, init_cfg=dict(type='Pretrained',
                                            checkpoint=str(path), **extra))


def _same_state(a, b):
    """Bit-equal values, NaN equal to NaN."""
    return all(torch.equal(a[k].isnan(), b[k].isnan()) and torch.equal(
        a[k].nan_to_num(), b[k].nan_to_num()) for k in a)


def test_init_cfg_refuses_a_wrongly_shaped_tensor(tmp_path):
    src = write_timm_file(tmp_path / 'in', poisoned(tiny_state(), shape=True))
    model = _init_cfg_model(src)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(WeightMismatchError) as e:
        model.init_weights()
    assert str(src) in str(e.value)
    assert f'{BAD_KEY}: checkpoint (3, 5, 1, 1) vs model (32, 128, 1, 1)' \
        in str(e.value)
    assert _same_state(model.state_dict(), before)  # nothing loaded
    assert os.listdir(tmp_path / 'in') == [src.name]


@pytest.mark.parametrize('problem', ['nan', 'inf'])
def test_init_cfg_refuses_nonfinite_values_unless_allowed(tmp_path, problem):
    state = poisoned(tiny_state(), **{problem: True})
    src = write_timm_file(tmp_path / 'in', state)
    model = _init_cfg_model(src)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(NonFiniteWeightsError) as e:
        model.init_weights()
    assert str(src) in str(e.value) and 'allow_nonfinite=True' in str(e.value)
    assert _same_state(model.state_dict(), before)
    assert os.listdir(tmp_path / 'in') == [src.name]

    allowed = _init_cfg_model(src, allow_nonfinite=True)
    allowed.init_weights()
    assert _same_state(allowed.state_dict(), state)


def test_init_cfg_in_a_detector_config(tmp_path):
    """The same refusal through an mmdet config's backbone."""
    src = write_timm_file(tmp_path / 'in', poisoned(
        dict(randomize(Res2Net(depth=50)).state_dict()), nan=True))
    detector = build_in_scope('mmdet', small_detector_cfg(dict(
        type='res2net_mm.Res2Net', depth=50, out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=str(src)))))
    with pytest.raises(NonFiniteWeightsError, match=NAN_KEY):
        detector.init_weights()


def test_library_writer_refuses_nonfinite_values(tmp_path):
    dst = tmp_path / 'out.pth'
    with pytest.raises(NonFiniteWeightsError):
        save_checkpoint_as(poisoned(tiny_state(), nan=True), dst, 'timm')
    assert os.listdir(tmp_path) == []
    save_checkpoint_as(poisoned(tiny_state(), nan=True), dst, 'timm',
                       allow_nonfinite=True)
    assert dst.exists()


def test_validation_is_a_pure_function():
    """Missing, unexpected and mis-shaped keys, all listed at once; the
    weights are not changed."""
    from res2net_mm.converters import detect_variant
    state = tiny_state()
    variant = detect_variant(state)
    assert validate_native(state, variant, 'w') == {}
    broken = dict(state)
    del broken['layer1.0.bn3.running_var']
    broken['layer1.0.extra.weight'] = torch.zeros(2)
    broken[BAD_KEY] = torch.zeros(3, 5, 1, 1)
    with pytest.raises(TensorShapeError) as e:
        validate_native(broken, variant, 'w.pth')
    message = str(e.value)
    assert message.startswith('w.pth: 3 tensors do not fit the architecture '
                              'detected from the file')
    for line in ['layer1.0.bn3.running_var: missing from checkpoint, '
                 'expected (64,)',
                 'layer1.0.extra.weight: checkpoint (2,), not in it',
                 f'{BAD_KEY}: checkpoint (3, 5, 1, 1) vs expected '
                 '(32, 128, 1, 1)']:
        assert line in message
    assert torch.equal(broken[BAD_KEY], torch.zeros(3, 5, 1, 1))
    # a classifier must take the backbone's 512 features
    fc = dict(state, **{'fc.weight': torch.zeros(10, 256),
                        'fc.bias': torch.zeros(10)})
    with pytest.raises(TensorShapeError,
                       match=r'fc.weight: checkpoint \(10, 256\) vs expected '
                       r'\(10, 512\)'):
        validate_native(fc, detect_variant(fc), 'w')


def test_deformable_offsets_are_checked_against_their_conv():
    """Detection cannot tell deformable layers; their offset convs are checked
    against the conv they steer (2 offsets per tap, 3 when modulated)."""
    from res2net_mm.converters import detect_variant
    from res2net_mm.converters.validate import architecture_shapes
    state = tiny_state()
    expected = architecture_shapes(detect_variant(state))
    conv = 'layer2.0.convs.0'  # (8, 8, 3, 3)
    good = dict(state, **{f'{conv}.conv_offset.weight': torch.zeros(
        27, 8, 3, 3), f'{conv}.conv_offset.bias': torch.zeros(27)})
    check_shapes(good, expected, 'w')
    bad = dict(good, **{f'{conv}.conv_offset.weight': torch.zeros(
        18, 8, 1, 1)})
    with pytest.raises(TensorShapeError, match='conv_offset.weight: '
                       r'checkpoint \(18, 8, 1, 1\)'):
        check_shapes(bad, expected, 'w')


# Files written by the libraries themselves, then damaged.


def test_timm_file_with_a_named_architecture(tmp_path):
    import timm
    theirs = timm.create_model('res2net50_26w_4s', pretrained=False)
    state = dict(theirs.state_dict())
    state['layer3.4.conv3.weight'] = state['layer3.4.conv3.weight'][:, :100]
    src = write_timm_file(tmp_path / 'in', state)
    dst = tmp_path / 'in' / 'out.pth'
    for extra in ([], ['--arch', 'res2net50_26w_4s']):
        result = run_tool('convert.py', src, dst, *extra)
        assert result.returncode == 1
        assert ('layer3.4.conv3.weight: checkpoint (1024, 100, 1, 1) vs '
                'expected (1024, 416, 1, 1)') in result.stderr
        assert_nothing_written(tmp_path / 'in', src, dst)
    assert "variant 'res2net50_26w_4s'" in result.stderr


def test_mmpretrain_checkpoint_with_a_wrongly_shaped_tensor(tmp_path):
    from mmengine.runner import save_checkpoint
    model = build_in_scope('mmpretrain', dict(
        type='ImageClassifier',
        backbone=dict(type='Res2Net', depth=50, deep_stem=True,
                      avg_down=True),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=7, in_channels=2048)))
    state = dict(model.state_dict())
    state['head.fc.weight'] = torch.zeros(7, 1024)
    (tmp_path / 'in').mkdir()
    src = tmp_path / 'in' / 'classifier.pth'
    save_checkpoint(dict(meta=dict(epoch=1), state_dict=state), str(src))
    dst = tmp_path / 'in' / 'out.pth'
    result = run_tool('convert.py', src, dst)
    assert result.returncode == 1
    assert 'fc.weight: checkpoint (7, 1024) vs expected (7, 2048)' \
        in result.stderr
    assert_nothing_written(tmp_path / 'in', src, dst)


def test_mindspore_checkpoint_with_nan_and_inf(tmp_path):
    import mindspore as ms
    ms.set_context(mode=ms.PYNATIVE_MODE)
    ms.set_device('CPU')
    net = mindcv_net(ms, 'res2net50')
    for p in net.get_parameters():
        if p.name == 'layer1.0.bn1.moving_variance':
            p.set_data(ms.Tensor(np.full(p.shape, np.nan, np.float32)))
        if p.name == 'classifier.bias':
            p.set_data(ms.Tensor(np.full(p.shape, np.inf, np.float32)))
    (tmp_path / 'in').mkdir()
    src = tmp_path / 'in' / 'res2net50.ckpt'
    ms.save_checkpoint(net, str(src))
    dst = tmp_path / 'in' / 'out.pth'
    result = run_tool('convert.py', src, dst)
    assert result.returncode == 1
    assert '2 tensors hold non-finite values' in result.stderr
    assert 'layer1.0.bn1.running_var: 104 NaN and 0 infinite of 104 values' \
        in result.stderr
    assert 'fc.bias: 0 NaN and 1001 infinite of 1001 values' in result.stderr
    assert_nothing_written(tmp_path / 'in', src, dst)
