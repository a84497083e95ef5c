"""tools/test.py, tools/train.py's load_from and dist_test.sh with checkpoints
of any supported format for the config's whole model, converted on load.

The weights are one timm model of the demo config's architecture (Res2Net-26,
16 base channels, 10 classes), written by the libraries themselves: timm's
hub writer (``pytorch_model.bin`` and ``model.safetensors``), MindSpore's
``save_checkpoint`` (MindCV names) and mmengine's ``save_checkpoint`` of the
config's mmpretrain ``ImageClassifier`` (the native checkpoint). Every file
must give the native checkpoint's predictions.
"""
import os.path as osp
import pickle

import pytest
import torch
from mmengine.config import Config
from toolhelp import (DEMO_CONFIG, free_port, run_tool, tiny_digits_opts,
                      tool_env)

from tests.converters.test_download import cache, register, server  # noqa: F401,E501
from tests.converters.utils import build_in_scope, randomize

# The demo config's backbone in timm's terms: timm's width per group is
# planes * base_width / 64, res2net_mm's planes * base_width / base_channels.
# timm's 7x7 stem always has 64 channels: so has the model here.
TIMM_DEMO = dict(layers=(2, 2, 2, 2), base_width=32,
                 channels=(16, 32, 64, 128), num_classes=10)
STEM = 'model.backbone.stem_channels=64'
NUM_VAL = 16


def opts(digits, **kw):
    return [*tiny_digits_opts(digits, **kw), STEM]


def demo_classifier():
    cfg = Config.fromfile(DEMO_CONFIG)
    cfg.model.backbone.stem_channels = 64
    return build_in_scope('mmpretrain', cfg.model.to_dict())


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    """The same weights in every format: ``{kind: path}``."""
    import mindspore as ms
    import timm
    from mmengine.runner import save_checkpoint
    from timm.models import save_for_hf

    from res2net_mm.converters import FROM_FORMAT, save_checkpoint_as
    folder = tmp_path_factory.mktemp('weights')
    net = randomize(timm.create_model('res2net50_26w_4s', **TIMM_DEMO))
    save_for_hf(net, folder / 'timm', safe_serialization='both')
    native = FROM_FORMAT['timm'](net.state_dict())

    model = demo_classifier()
    state = {('head.' if k.startswith('fc.') else 'backbone.') + k: v
             for k, v in native.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and all('num_batches' in k or 'preprocessor' in k
                                  for k in missing)
    save_checkpoint(dict(meta=dict(epoch=3), state_dict=model.state_dict()),
                    str(folder / 'native.pth'))

    ms.set_context(mode=ms.PYNATIVE_MODE)
    ours = save_checkpoint_as(native, folder / 'ours.ckpt', 'mindcv')[0]
    params = ms.load_checkpoint(ours)
    ms.save_checkpoint([{'name': k, 'data': v} for k, v in params.items()],
                       str(folder / 'mindcv.ckpt'))

    other = randomize(timm.create_model(
        'res2net50_26w_4s', **dict(TIMM_DEMO, base_width=16)))
    torch.save(other.state_dict(), folder / 'other-arch.pth')
    return dict(native=folder / 'native.pth',
                timm=folder / 'timm' / 'pytorch_model.bin',
                safetensors=folder / 'timm' / 'model.safetensors',
                mindcv=folder / 'mindcv.ckpt',
                other=folder / 'other-arch.pth',
                model=model)


def _test(ckpt, digits, tmp_path, script='test.py', extra=(), env=None):
    out = str(tmp_path / 'preds.pkl')
    args = [script, DEMO_CONFIG, str(ckpt)] + list(extra) + [
        '--work-dir', str(tmp_path), '--out', out, '--cfg-options',
        *opts(digits, num_val=NUM_VAL)]
    proc = run_tool(args, env=env)
    with open(out, 'rb') as f:
        return pickle.load(f), proc.stdout + proc.stderr


@pytest.fixture(scope='module')
def native_preds(files, digits, tmp_path_factory):
    preds, log = _test(files['native'], digits, tmp_path_factory.mktemp('n'))
    assert 'converted on load' not in log  # the model's own naming: mmengine
    return preds


def _scores(preds):
    return torch.stack([p['pred_score'] for p in preds])


@pytest.mark.parametrize('kind,naming', [('mindcv', 'mindcv naming'),
                                         ('timm', 'timm naming'),
                                         ('safetensors', 'timm naming')])
def test_test_tool_converts_on_load(files, digits, native_preds, tmp_path,
                                    kind, naming):
    preds, log = _test(files[kind], digits, tmp_path)
    assert len(preds) == NUM_VAL
    torch.testing.assert_close(_scores(preds), _scores(native_preds),
                               rtol=1e-4, atol=1e-5)
    assert [int(p['pred_label']) for p in preds] == \
        [int(p['pred_label']) for p in native_preds]
    line = next(x for x in log.splitlines() if 'converted on load' in x)
    assert naming in line and 'head.fc.* loaded (10 classes)' in line
    assert 'kept at init' not in line


def test_train_load_from_a_mindspore_file(files, digits, tmp_path):
    """One iteration from load_from=<MindSpore .ckpt>."""
    proc = run_tool([
        'train.py', DEMO_CONFIG, '--work-dir', str(tmp_path), '--cfg-options',
        *opts(digits, num_train=16, num_val=8),
        f'load_from={files["mindcv"]}'])
    log = proc.stdout + proc.stderr
    assert 'mindspore_ckpt file in mindcv naming' in log
    assert osp.isfile(tmp_path / 'epoch_1.pth')


def test_dist_test_two_processes_on_a_mindspore_file(files, digits,
                                                     native_preds, tmp_path):
    preds, log = _test(files['mindcv'], digits, tmp_path,
                       script='dist_test.sh', extra=['2'],
                       env=tool_env(PORT=free_port()))
    # rank 0 logs (the other rank's logger shows errors only)
    assert 'mindspore_ckpt file in mindcv naming' in log
    assert 'Distributed training: True' in log and 'GPU number: 2' in log
    assert len(preds) == NUM_VAL
    torch.testing.assert_close(_scores(preds), _scores(native_preds),
                               rtol=1e-4, atol=1e-5)


def test_load_from_a_published_name(files, server, cache, register,  # noqa: F811,E501
                                     tmp_path):
    """load_from='res2net_mm://NAME' whose file is a MindSpore .ckpt."""
    from res2net_mm.engine import build_runner
    register('tiny-mindcv', files['mindcv'],
             server.serve('tiny.ckpt', files['mindcv']), 'mindspore_ckpt',
             'mindcv')
    cfg = Config.fromfile(DEMO_CONFIG)
    cfg.work_dir = str(tmp_path)
    cfg.model.backbone.stem_channels = 64
    cfg.load_from = 'res2net_mm://test/tiny-mindcv'
    runner = build_runner(cfg)
    runner.load_or_resume()
    expected = files['model'].state_dict()
    for k, v in runner.model.state_dict().items():
        if 'num_batches_tracked' not in k:
            assert torch.equal(v, expected[k]), k
    assert server.requests == ['tiny.ckpt']


def test_another_architecture_is_refused(files, digits, tmp_path):
    proc = run_tool([
        'test.py', DEMO_CONFIG, str(files['other']), '--work-dir',
        str(tmp_path), '--cfg-options', *opts(digits)],
        check=False)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert "do not fit the model's backbone, nothing was loaded" in last
    assert 'layer1.0.conv1.weight: file (16, 64, 1, 1) vs model (32, 64, 1, ' \
        '1)' in last
    assert 'the file holds depth 26, 4w x 4s' in last
