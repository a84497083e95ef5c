"""``init_cfg=dict(type='Pretrained', checkpoint=PATH)`` on
``res2net_mm.Res2Net`` takes every format, from mmpretrain and mmdet configs
alike, and refuses weights that do not fit unless told otherwise."""
import logging

import pytest
import torch

from res2net_mm import Res2Net
from res2net_mm.converters import (WeightMismatchError, load_checkpoint_any,
                                   save_checkpoint_as)

from .test_library_files import small_detector_cfg
from .utils import (TINY_V1, TINY_V1B, assert_close, build_in_scope,
                    randomize)

X = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
V1B_50 = dict(depth=50, scales=4, base_width=26, deep_stem=True,
              avg_down=True)


@pytest.fixture(scope='module')
def source():
    """A random v1b Res2Net-50 (the architecture mmdet also has)."""
    torch.manual_seed(0)
    return randomize(Res2Net(out_indices=(0, 1, 2, 3), **V1B_50)).eval()


@pytest.fixture(scope='module')
def files(source, tmp_path_factory):
    """The same weights in every format we write, plus a MindCV .ckpt."""
    folder = tmp_path_factory.mktemp('formats')
    state = dict(source.state_dict())
    state['fc.weight'] = torch.randn(1001, 2048)
    state['fc.bias'] = torch.randn(1001)
    out = {}
    for fmt, name in [('native', 'w.pth'), ('timm', 'timm.pth'),
                      ('mmpretrain', 'mmpretrain.pth'), ('mmdet', 'det.pth'),
                      ('safetensors', 'w.safetensors'),
                      ('mindcv', 'mindcv.ckpt')]:
        out[fmt] = save_checkpoint_as(state, folder / name, fmt)[0]
    return out


FORMATS = ['native', 'timm', 'mmpretrain', 'mmdet', 'safetensors', 'mindcv']


@pytest.mark.parametrize('fmt', FORMATS)
def test_mmpretrain_config(files, source, fmt):
    model = build_in_scope('mmpretrain', dict(
        type='ImageClassifier',
        backbone=dict(type='res2net_mm.Res2Net', arch='res2net50_v1b',
                      out_indices=(0, 1, 2, 3),
                      init_cfg=dict(type='Pretrained',
                                    checkpoint=files[fmt])),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=10, in_channels=2048)))
    assert type(model.backbone) is Res2Net
    model.init_weights()
    model.eval()
    with torch.no_grad():
        for a, b in zip(model.backbone(X), source(X), strict=True):
            assert torch.equal(a, b)


@pytest.mark.parametrize('fmt', FORMATS)
def test_mmdet_config(files, source, fmt):
    detector = build_in_scope('mmdet', small_detector_cfg(dict(
        type='res2net_mm.Res2Net', out_indices=(0, 1, 2, 3), **V1B_50,
        init_cfg=dict(type='Pretrained', checkpoint=files[fmt]))))
    detector.init_weights()
    detector.eval()
    with torch.no_grad():
        for a, b in zip(detector.backbone(X), source(X), strict=True):
            assert torch.equal(a, b)


def test_prefix_and_detector_checkpoint(tmp_path, source):
    """A whole detector checkpoint, with or without ``prefix='backbone.'``."""
    state = {f'backbone.{k}': v for k, v in source.state_dict().items()}
    state['neck.fpn_convs.0.conv.weight'] = torch.zeros(2, 2, 3, 3)
    path = tmp_path / 'detector.pth'
    torch.save(dict(state_dict=state), path)
    for prefix in (None, 'backbone.'):
        model = Res2Net(out_indices=(0, 1, 2, 3), **V1B_50, init_cfg=dict(
            type='Pretrained', checkpoint=str(path), prefix=prefix))
        model.init_weights()
        model.eval()
        with torch.no_grad():
            assert torch.equal(model(X)[-1], source(X)[-1])


def tiny_file(tmp_path, arch):
    path = tmp_path / 'tiny.pth'
    model = randomize(Res2Net(**arch))
    save_checkpoint_as(model.state_dict(), path, 'timm')
    return path, model


def test_mismatch_raises_with_key_and_shapes(tmp_path):
    path, _ = tiny_file(tmp_path, TINY_V1)
    wider = Res2Net(**dict(TINY_V1, base_width=8), init_cfg=dict(
        type='Pretrained', checkpoint=str(path)))
    with pytest.raises(WeightMismatchError) as e:
        wider.init_weights()
    message = str(e.value)
    assert str(path) in message
    # 4 splits of 4 channels in the file, of 8 in the model
    assert 'layer1.0.conv1.weight: checkpoint (16, 16, 1, 1) vs model ' \
        '(32, 16, 1, 1)' in message
    assert 'allow_mismatch=True' in message


def test_missing_keys_raise(tmp_path):
    """A v1 file into a v1b backbone: the deep stem is missing."""
    path, _ = tiny_file(tmp_path, TINY_V1)
    model = Res2Net(**TINY_V1B, init_cfg=dict(type='Pretrained',
                                              checkpoint=str(path)))
    with pytest.raises(WeightMismatchError) as e:
        model.init_weights()
    assert 'conv1.0.weight: missing from checkpoint, model (8, 3, 3, 3)' \
        in str(e.value)
    assert 'conv1.weight: checkpoint (16, 3, 7, 7), not in model' \
        in str(e.value)


def test_allow_mismatch_loads_what_fits(tmp_path, caplog):
    path, source = tiny_file(tmp_path, TINY_V1)
    model = Res2Net(**TINY_V1B, init_cfg=dict(
        type='Pretrained', checkpoint=str(path), allow_mismatch=True))
    model.init_weights()
    state = model.state_dict()
    # the blocks fit (same widths), the stem and the v1b shortcuts do not
    assert torch.equal(state['layer2.1.convs.0.weight'],
                       source.state_dict()['layer2.1.convs.0.weight'])
    assert torch.equal(state['bn1.running_var'],
                       source.state_dict()['bn1.running_var'])
    assert not torch.equal(state['layer1.0.downsample.1.weight'],
                           source.state_dict()['layer1.0.downsample.0.weight'])


def test_classifier_is_not_a_backbone_error(tmp_path):
    """MindCV's 1001-class head (or any head) is dropped, not a mismatch."""
    path = tmp_path / 'w.ckpt'
    model = randomize(Res2Net(**TINY_V1))
    state = dict(model.state_dict(), **{'fc.weight': torch.randn(1001, 512),
                                        'fc.bias': torch.randn(1001)})
    save_checkpoint_as(state, path, 'mindcv')
    _, info = load_checkpoint_any(path)
    assert info['variant']['num_classes'] == 1001
    target = Res2Net(**TINY_V1, init_cfg=dict(type='Pretrained',
                                              checkpoint=str(path)))
    target.init_weights()
    for k, v in model.state_dict().items():
        if not k.endswith('num_batches_tracked'):
            assert torch.equal(target.state_dict()[k], v), k


def test_unknown_init_cfg_key(tmp_path):
    path, _ = tiny_file(tmp_path, TINY_V1)
    model = Res2Net(**TINY_V1, init_cfg=dict(
        type='Pretrained', checkpoint=str(path), strict=False))
    with pytest.raises(KeyError, match='allow_mismatch'):
        model.init_weights()


def test_fewer_stages_drop_later_weights(tmp_path):
    path, source = tiny_file(tmp_path, TINY_V1)
    model = Res2Net(**TINY_V1, num_stages=3, out_indices=(2, ), init_cfg=dict(
        type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    assert torch.equal(model.state_dict()['layer3.1.conv3.weight'],
                       source.state_dict()['layer3.1.conv3.weight'])


def test_logs_what_was_loaded(tmp_path):
    from mmengine.logging import MMLogger
    path, _ = tiny_file(tmp_path, TINY_V1)
    logger = MMLogger.get_current_instance()
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    try:
        Res2Net(**TINY_V1, init_cfg=dict(
            type='Pretrained', checkpoint=str(path))).init_weights()
    finally:
        logger.removeHandler(handler)
    text = '\n'.join(r.getMessage() for r in records)
    assert 'timm naming (detected)' in text and 'depth 26, 4w x 4s' in text


def test_dcn_backbone_from_plain_weights(tmp_path):
    """Classification weights have no deformable-conv offsets: they start at
    zero, as mmcv initialises them (a DCNv1 then equals a plain conv), and
    everything else loads."""
    path, source = tiny_file(tmp_path, TINY_V1)
    model = Res2Net(**TINY_V1, dcn=dict(type='DCN', deform_groups=1),
                    stage_with_dcn=(False, True, False, False),
                    init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    state = model.state_dict()
    offsets = [k for k in state if '.conv_offset.' in k]
    assert offsets and all(not state[k].any() for k in offsets)
    for k, v in source.state_dict().items():
        assert torch.equal(state[k], v), k
    model.eval()
    source.eval()
    with torch.no_grad():
        assert_close(model(X)[-1], source(X)[-1], rtol=1e-5)


def test_url_download_with_hash_check(tmp_path, monkeypatch):
    """``checkpoint=URL`` downloads once into torch hub's folder; a published
    name (``-<sha256 prefix>.pth``) is checked against the content."""
    import functools
    import http.server
    import threading

    from res2net_mm.converters import CheckpointError

    from .utils import run_tool
    path, source = tiny_file(tmp_path, TINY_V1)
    served = tmp_path / 'served'
    served.mkdir()
    assert run_tool('publish_model.py', path,
                    served / 'tiny.pth').returncode == 0
    [published] = served.glob('tiny-*.pth')
    (served / 'tiny-00000000.pth').write_bytes(published.read_bytes())

    class Quiet(http.server.SimpleHTTPRequestHandler):

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(
        ('127.0.0.1', 0), functools.partial(Quiet, directory=str(served)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    base = f'http://127.0.0.1:{server.server_port}'
    try:
        model = Res2Net(**TINY_V1, init_cfg=dict(
            type='Pretrained', checkpoint=f'{base}/{published.name}'))
        model.init_weights()
        for k, v in source.state_dict().items():
            assert torch.equal(model.state_dict()[k], v), k
        cached = tmp_path / 'torch_home' / 'hub' / 'checkpoints'
        assert (cached / published.name).exists()
        with pytest.raises(CheckpointError, match='hash'):
            load_checkpoint_any(f'{base}/tiny-00000000.pth')
        assert not (cached / 'tiny-00000000.pth').exists()
        with pytest.raises(CheckpointError, match='unknown OpenMMLab'):
            load_checkpoint_any('open-mmlab://no_such_model')
    finally:
        server.shutdown()
