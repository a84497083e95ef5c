"""Untrusted pickles are refused, bad files give clear errors, and a failed
conversion writes nothing."""
import os
import pickle

import pytest
import torch

from res2net_mm import Res2Net
from res2net_mm.converters import (CheckpointError, UnsafeCheckpointError,
                                   load_checkpoint_any, save_checkpoint_as)

from .utils import TINY_V1, TINY_V1B, randomize, run_tool


class _Payload:
    """Unpickling this runs ``open(marker, 'w')``: a stand-in for any code."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), 'w'))


@pytest.fixture
def weights(tmp_path):
    path = tmp_path / 'good.pth'
    save_checkpoint_as(randomize(Res2Net(**TINY_V1)).state_dict(), path,
                       'timm')
    return path


def evil_file(tmp_path, legacy=False):
    marker = tmp_path / 'PWNED'
    state = randomize(Res2Net(**TINY_V1)).state_dict()
    state['evil'] = _Payload(marker)
    path = tmp_path / 'evil.pth'
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    return path, marker


@pytest.mark.parametrize('legacy', [False, True], ids=['zip', 'legacy'])
def test_code_running_pickle_is_refused(tmp_path, legacy):
    path, marker = evil_file(tmp_path, legacy)
    # the payload is real: a plain unpickle would run it
    assert not marker.exists()
    with pytest.raises(UnsafeCheckpointError) as e:
        load_checkpoint_any(path)
    assert not marker.exists()
    message = str(e.value)
    assert str(path) in message and 'refused' in message
    assert 'trust' in message and 'arbitrary code' in message

    out = tmp_path / 'out.pth'
    result = run_tool('convert.py', path, out)
    assert result.returncode == 1
    assert 'refused' in result.stderr and '--trust' in result.stderr
    assert not marker.exists() and not out.exists()


def test_the_payload_is_live_when_trusted(tmp_path):
    """Control: with the explicit opt-in the file is fully unpickled."""
    path, marker = evil_file(tmp_path)
    native, info = load_checkpoint_any(path, trust=True)
    assert marker.exists()
    assert info['dropped']['evil'].startswith('not a tensor')


def mmengine_training_checkpoint(tmp_path):
    """What mmengine's Runner writes: weights plus pickled training state."""
    from mmengine.logging import HistoryBuffer, MessageHub
    model = randomize(Res2Net(**TINY_V1B))
    hub = MessageHub.get_instance('res2net_mm_test')
    hub.update_scalar('train/loss', 1.5)
    assert isinstance(hub.log_scalars['train/loss'], HistoryBuffer)
    optim = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.rand(2, 3, 64, 64))[-1].mean().backward()
    optim.step()  # momentum buffers: the bulk of a real training checkpoint
    ckpt = dict(
        meta=dict(epoch=3, iter=30, mmengine_version='0.10.7'),
        state_dict={f'backbone.{k}': v
                    for k, v in model.state_dict().items()},
        optimizer=optim.state_dict(),
        message_hub=hub.state_dict())
    from mmengine.runner import save_checkpoint
    path = tmp_path / 'epoch_3.pth'
    # The project's tools register a data-only pickler for HistoryBuffer
    # (res2net_mm.engine.checkpoint) for the whole process; a test that ran
    # them earlier in this worker must not turn this into the safe form.
    import copyreg
    reducer = copyreg.dispatch_table.pop(HistoryBuffer, None)
    try:
        save_checkpoint(ckpt, str(path))
    finally:
        if reducer is not None:
            copyreg.dispatch_table[HistoryBuffer] = reducer
    return path, model


def test_training_checkpoint_needs_trust(tmp_path):
    path, model = mmengine_training_checkpoint(tmp_path)
    # torch's allow-list is process-wide and the project's tools extend it
    # (HistoryBuffer among others): test against torch's own list alone.
    saved = torch.serialization.get_safe_globals()
    torch.serialization.clear_safe_globals()
    try:
        with pytest.raises(UnsafeCheckpointError, match='HistoryBuffer'):
            load_checkpoint_any(path)
    finally:
        torch.serialization.add_safe_globals(saved)
    native, info = load_checkpoint_any(path, trust=True)
    assert info['format'] == 'mmpretrain'
    assert info['dropped']['message_hub'] == \
        'training state, not model weights'
    assert info['dropped']['optimizer'] == 'training state, not model weights'
    state = model.state_dict()
    assert all(torch.equal(native[k], v) for k, v in state.items())
    out = tmp_path / 'out.pth'
    assert run_tool('convert.py', path, out).returncode == 1
    assert not out.exists()
    result = run_tool('convert.py', path, out, '--trust')
    assert result.returncode == 0, result.stderr
    assert 'training state' in result.stdout
    torch.load(out, weights_only=True)  # the result is plain


def _problem_files(tmp_path, weights):
    data = weights.read_bytes()
    files = {}
    files['empty'] = tmp_path / 'empty.pth'
    files['empty'].write_bytes(b'')
    files['truncated'] = tmp_path / 'truncated.pth'
    files['truncated'].write_bytes(data[:len(data) // 2])
    files['text'] = tmp_path / 'page.pth'
    files['text'].write_text('<html><body>404 Not Found</body></html>')
    files['pickled_list'] = tmp_path / 'list.pth'
    torch.save([1, 2, 3], files['pickled_list'])
    files['no_tensors'] = tmp_path / 'config.pth'
    torch.save({'lr': 0.1}, files['no_tensors'])
    files['resnet'] = tmp_path / 'resnet.pth'
    import torchvision
    torch.save(torchvision.models.resnet18().state_dict(), files['resnet'])
    files['truncated_legacy'] = tmp_path / 'legacy.pth'
    torch.save(torch.load(weights, weights_only=True),
               files['truncated_legacy'],
               _use_new_zipfile_serialization=False)
    legacy = files['truncated_legacy'].read_bytes()
    files['truncated_legacy'].write_bytes(legacy[:len(legacy) - 1000])
    files['plain_pickle'] = tmp_path / 'pickle.pth'
    files['plain_pickle'].write_bytes(pickle.dumps({'a': 1}, protocol=4))
    return files


EXPECTED = {
    'empty': 'empty',
    'truncated': 'truncated',
    'text': 'not a checkpoint',
    'pickled_list': 'not a dict of weights',
    'no_tensors': 'holds no tensors',
    'resnet': 'not a ResNet',
    'truncated_legacy': 'truncated',
    'plain_pickle': 'not written by torch.save',
}


def test_bad_files_give_clear_errors(tmp_path, weights):
    files = _problem_files(tmp_path, weights)
    assert set(files) == set(EXPECTED)
    for name, path in files.items():
        with pytest.raises(CheckpointError) as e:
            load_checkpoint_any(path)
        assert str(path) in str(e.value), name
        assert EXPECTED[name] in str(e.value), (name, str(e.value))
        out = tmp_path / f'{name}.out.pth'
        result = run_tool('convert.py', path, out)
        assert result.returncode == 1, name
        assert str(path) in result.stderr and EXPECTED[name] in result.stderr
        assert not out.exists()
    missing = tmp_path / 'nope.pth'
    with pytest.raises(CheckpointError, match='no such file'):
        load_checkpoint_any(missing)


def test_truncated_mindspore_ckpt(tmp_path):
    path = tmp_path / 'w.ckpt'
    save_checkpoint_as(randomize(Res2Net(**TINY_V1)).state_dict(), path,
                       'mindcv')
    data = path.read_bytes()
    path.write_bytes(data[:-100])
    with pytest.raises(CheckpointError, match='truncated') as e:
        load_checkpoint_any(path)
    assert str(path) in str(e.value)


def test_wrong_variant_is_refused(tmp_path, weights):
    out = tmp_path / 'out.pth'
    result = run_tool('convert.py', weights, out, '--arch', 'res2net50_26w_4s')
    assert result.returncode == 1
    assert str(weights) in result.stderr
    assert 'depth: file 26, expected 50' in result.stderr
    assert not out.exists()
    with pytest.raises(CheckpointError, match='different architecture'):
        load_checkpoint_any(weights, arch='res2net50_v1b_26w_4s')


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    state = randomize(Res2Net(**TINY_V1)).state_dict()
    dst = tmp_path / 'out.pth'

    def broken_save(obj, f, *args, **kwargs):
        with open(f, 'wb') as fh:
            fh.write(b'half a file')
        raise OSError('No space left on device')

    monkeypatch.setattr(torch, 'save', broken_save)
    with pytest.raises(OSError, match='No space'):
        save_checkpoint_as(state, dst, 'timm')
    assert os.listdir(tmp_path) == []


def test_existing_destination_needs_force(tmp_path, weights):
    dst = tmp_path / 'exists.pth'
    dst.write_bytes(b'keep me')
    result = run_tool('convert.py', weights, dst)
    assert result.returncode == 2 and '--force' in result.stderr
    assert dst.read_bytes() == b'keep me'
    result = run_tool('convert.py', weights, dst, '--force')
    assert result.returncode == 0, result.stderr
    load_checkpoint_any(dst)
