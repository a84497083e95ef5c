"""Portable checkpoints: only torch's default weights_only globals, restored exactly.

The content is what mmengine's Runner and our hooks put into a checkpoint (a
message hub of HistoryBuffers, numpy scalars in meta and runtime info, a state
dict with ``_metadata``, Counter milestones, the random generator states). The
file is loaded in a fresh interpreter that never imports res2net_mm, so no
allow-list of this process helps it.
"""
import collections
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer, MessageHub

from res2net_mm.engine import (PORTABLE_TAG, PortableCheckpointHook,
                               from_portable, get_rng_state, set_rng_state,
                               to_portable)

Point = collections.namedtuple('Point', 'x y')


def _checkpoint():
    hub = MessageHub.get_instance('portable-test')
    for i in range(5):
        hub.update_scalar('train/loss', 1.0 / (i + 1))
    hub.update_scalar('val/acc', 3, count=2)
    hub.update_info('best_score', np.float64(97.5))
    state_dict = collections.OrderedDict(w=torch.ones(2))
    state_dict._metadata = collections.OrderedDict({'': {'version': 2}})
    return dict(
        meta=dict(epoch=2, seed=np.int64(7), best=np.float32(0.5),
                  name=np.str_('digits'), flag=np.bool_(True),
                  table=np.arange(6, dtype=np.uint16).reshape(2, 3),
                  words=np.array(['a', 'bc']), scalar_array=np.array(2.5),
                  pair=(np.int32(1), 2)),
        state_dict=state_dict,
        message_hub=hub.state_dict(),
        param_schedulers=[dict(milestones=collections.Counter([30, 60]))],
        rng_state=get_rng_state())


def _assert_same(a, b):
    """Equal values and equal types, recursively."""
    assert type(a) is type(b), (a, b)
    if isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y)
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert np.array_equal(a, b)
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    elif isinstance(a, HistoryBuffer):
        _assert_same(a._log_history, b._log_history)
        _assert_same(a._count_history, b._count_history)
        assert a.max_length == b.max_length
    else:
        assert a == b


def test_round_trip_is_exact_and_leaves_the_original(tmp_path):
    ckpt = _checkpoint()
    milestones = ckpt['param_schedulers'][0]['milestones']
    portable = to_portable(ckpt)
    # the original is untouched; unchanged parts are shared, not copied
    assert isinstance(ckpt['message_hub']['log_scalars']['train/loss'],
                      HistoryBuffer)
    assert portable['param_schedulers'][0]['milestones'] is milestones
    assert portable['state_dict'] is ckpt['state_dict']
    assert portable['meta']['seed'][PORTABLE_TAG] == 'numpy_scalar'

    path = tmp_path / 'portable.pth'
    torch.save(portable, path)
    restored = from_portable(torch.load(path, weights_only=True))
    _assert_same(restored, ckpt)
    assert restored['state_dict']._metadata == {'': {'version': 2}}
    buf = restored['message_hub']['log_scalars']['train/loss']
    assert buf.mean() == pytest.approx(np.mean([1, 1 / 2, 1 / 3, 1 / 4,
                                                1 / 5]))
    assert buf.current() == pytest.approx(0.2)
    # the restored generators continue the sequence of the saved ones
    expected = np.random.rand(3), torch.rand(3)
    set_rng_state(restored['rng_state'])
    assert np.array_equal(np.random.rand(3), expected[0])
    assert torch.equal(torch.rand(3), expected[1])


def test_loads_in_a_process_without_res2net_mm(tmp_path):
    path = tmp_path / 'portable.pth'
    torch.save(to_portable(_checkpoint()), path)
    code = textwrap.dedent(f'''
        import sys, torch
        # a fresh process: only torch's default allow-list applies
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(
            {str(path)!r})
        assert unsafe == [], unsafe
        ckpt = torch.load({str(path)!r})  # torch's default: weights_only
        assert ckpt['meta']['epoch'] == 2, ckpt['meta']
        assert not any(m.startswith('res2net_mm') for m in sys.modules)
        print('loaded')
    ''')
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'loaded' in proc.stdout


def test_containers_keep_their_types():
    nested = [Point(np.int32(1), 2), collections.Counter(a=1),
              collections.defaultdict(list, k=[np.float16(0.5)])]
    _assert_same(from_portable(to_portable(nested)), nested)
    assert to_portable(nested)[2].default_factory is list


def test_hook_converts_before_save_and_restores_after_load():
    hook = PortableCheckpointHook()
    ckpt = _checkpoint()
    original = dict(ckpt)
    hook.before_save_checkpoint(None, ckpt)
    assert ckpt['message_hub']['log_scalars']['train/loss'][
        PORTABLE_TAG] == 'HistoryBuffer'
    hook.after_load_checkpoint(None, ckpt)
    _assert_same(ckpt, original)
    # a non-portable (older) checkpoint passes through unchanged
    hook.after_load_checkpoint(None, ckpt)
    _assert_same(ckpt, original)


def test_unknown_tag_is_a_clear_error():
    with pytest.raises(ValueError, match="'Evil'.*another version"):
        from_portable({'meta': {PORTABLE_TAG: 'Evil'}})


def test_tagged_entries_cannot_run_code(tmp_path):
    """A tag only selects numpy/HistoryBuffer rebuilding; a pickle that
    would run code is refused by torch before any tag is read."""

    class Evil:

        def __reduce__(self):
            return (subprocess.call, (['touch', str(tmp_path / 'pwned')], ))

    path = tmp_path / 'evil.pth'
    torch.save({'meta': {PORTABLE_TAG: 'ndarray', 'data': Evil()}}, path)
    with pytest.raises(pickle.UnpicklingError):
        from_portable(torch.load(path, weights_only=True))
    assert not (tmp_path / 'pwned').exists()
