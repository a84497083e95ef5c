"""MindSpore .ckpt (and safetensors) files written by MindSpore + MindCV are
read without MindSpore and reproduce MindCV's logits."""
import numpy as np
import pytest
import torch

from res2net_mm import VARIANTS, Res2Net, build_classifier
from res2net_mm.converters import load_checkpoint_any, save_checkpoint_as
from res2net_mm.converters.mindspore_ckpt import parse_ckpt, serialize_ckpt

from .utils import TINY_V1B, assert_close, mindcv_net, randomize, run_tool


@pytest.fixture(scope='module')
def ms():
    import mindspore
    mindspore.set_context(mode=mindspore.PYNATIVE_MODE)
    mindspore.set_device('CPU')
    return mindspore


def test_wire_format_matches_mindspore_proto(ms):
    """Our decoder reads what MindSpore's generated protobuf classes write
    (several slices of one tensor included), and they read what we write."""
    from mindspore.train.checkpoint_pb2 import Checkpoint
    data = np.arange(12, dtype=np.float32).reshape(3, 4)
    msg = Checkpoint()
    for part in np.array_split(data, 2):  # MindSpore slices big tensors
        value = msg.value.add()
        value.tag = 'layer.weight'
        value.tensor.dims.extend(data.shape)
        value.tensor.tensor_type = 'Float32'
        value.tensor.tensor_content = part.tobytes()
    parsed = parse_ckpt(msg.SerializeToString())
    assert list(parsed) == ['layer.weight']
    assert np.array_equal(parsed['layer.weight'], data)

    back = Checkpoint()
    back.ParseFromString(serialize_ckpt({'a': data, 'b': np.int32(3)}))
    assert [v.tag for v in back.value] == ['a', 'b']
    assert list(back.value[0].tensor.dims) == [3, 4]
    assert back.value[0].tensor.tensor_type == 'Float32'
    assert back.value[0].tensor.tensor_content == data.tobytes()
    assert list(back.value[1].tensor.dims) == []  # a scalar, as MindSpore


def test_reader_and_writer_agree_with_mindspore(ms, tmp_path):
    """MindSpore's save_checkpoint -> our parser; our writer -> MindSpore's
    load_checkpoint; every dtype MindCV uses plus a scalar."""
    rng = np.random.default_rng(0)
    arrays = {
        'a.weight': rng.standard_normal((3, 2, 3, 3)).astype(np.float32),
        'b.half': rng.standard_normal((5, )).astype(np.float16),
        'c.int': np.arange(6, dtype=np.int32).reshape(2, 3),
        'd.step': np.array(7, dtype=np.int64),
    }
    path = tmp_path / 'ms.ckpt'
    ms.save_checkpoint([{'name': k, 'data': ms.Tensor(v)}
                        for k, v in arrays.items()], str(path))
    parsed = parse_ckpt(path.read_bytes())
    assert list(parsed) == list(arrays)
    for k, v in arrays.items():
        assert parsed[k].dtype == v.dtype and parsed[k].shape == v.shape, k
        assert np.array_equal(parsed[k], v), k
    # with MindSpore's CRC32 trailer; a flipped byte is caught
    crc = tmp_path / 'crc.ckpt'
    ms.save_checkpoint([{'name': k, 'data': ms.Tensor(v)}
                        for k, v in arrays.items()], str(crc), crc_check=True)
    data = crc.read_bytes()
    assert data[-17:-10] == b'crc_num'
    assert all(np.array_equal(parse_ckpt(data)[k], v)
               for k, v in arrays.items())
    broken = bytearray(data)
    broken[-30] ^= 0xFF
    with pytest.raises(ValueError, match='CRC32'):
        parse_ckpt(bytes(broken))

    ours = tmp_path / 'ours.ckpt'
    ours.write_bytes(serialize_ckpt(arrays))
    loaded = ms.load_checkpoint(str(ours))
    for k, v in arrays.items():
        got = loaded[k].asnumpy()
        assert got.dtype == v.dtype and np.array_equal(got, v), k


MINDCV = {v.mindcv: name for name, v in VARIANTS.items() if v.mindcv}


@pytest.mark.parametrize('mindcv_name', sorted(MINDCV))
def test_mindcv_checkpoints(ms, tmp_path, mindcv_name):
    """All four seed models: read, detected, converted; the two 50-layer ones
    also compared logit by logit with MindCV's forward pass."""
    net = mindcv_net(ms, mindcv_name)
    src = tmp_path / f'{mindcv_name}.ckpt'
    ms.save_checkpoint(net, str(src))
    native, info = load_checkpoint_any(src)
    assert info['container'] == 'mindspore_ckpt'
    assert info['format'] == 'mindcv'
    variant = info['variant']
    assert mindcv_name in variant['variants']
    assert variant['num_classes'] == 1001  # MindCV's default head
    params = {p.name: p.asnumpy() for p in net.get_parameters()}
    assert len(native) == len(params) + len(info['added'])
    # strict load into the named variant, classifier included
    model = build_classifier(MINDCV[mindcv_name], num_classes=1001)
    state = {f'backbone.{k}': v for k, v in native.items()
             if not k.startswith('fc.')}
    state.update({k: v for k, v in native.items() if k.startswith('fc.')})
    model.load_state_dict(state, strict=True)
    # every value arrives unchanged
    assert np.array_equal(native['fc.weight'].numpy(),
                          params['classifier.weight'])
    if mindcv_name.startswith('res2net50'):
        x = np.random.default_rng(1).random((1, 3, 64, 64), dtype=np.float32)
        expected = torch.from_numpy(net(ms.Tensor(x)).asnumpy())
        with torch.no_grad():
            assert_close(model.eval()(torch.from_numpy(x)), expected,
                         rtol=1e-4)


def test_mindcv_cli_and_back_to_mindspore(ms, tmp_path):
    """The command line tool reads a MindCV file, and the .ckpt we write
    loads into MindCV and gives the same logits."""
    net = mindcv_net(ms, 'res2net50_v1b', seed=3)
    src = tmp_path / 'res2net50_v1b.ckpt'
    ms.save_checkpoint(net, str(src))
    dst = tmp_path / 'r2n50_v1b.pth'
    result = run_tool('convert.py', src, dst, '--arch', 'res2net50_v1b')
    assert result.returncode == 0, result.stderr
    assert 'mindcv naming (detected)' in result.stdout
    assert 'MindCV default' in result.stdout  # the 1001-class head
    assert 'num_batches_tracked' in result.stdout
    back = tmp_path / 'back.ckpt'
    assert run_tool('convert.py', dst, back, '--to', 'mindcv').returncode == 0
    from mindcv.models.res2net import res2net50_v1b
    net2 = res2net50_v1b(pretrained=False)
    not_loaded, _ = ms.load_param_into_net(net2, ms.load_checkpoint(str(back)))
    assert not not_loaded
    net2.set_train(False)
    x = ms.Tensor(np.random.default_rng(2).random((1, 3, 64, 64),
                                                  dtype=np.float32))
    assert np.array_equal(net2(x).asnumpy(), net(x).asnumpy())


def test_mindspore_safetensors(ms, tmp_path):
    """MindSpore's own safetensors output (MindCV names) reads the same."""
    model = randomize(Res2Net(**TINY_V1B))
    state = {k: v for k, v in model.state_dict().items()}
    ckpt = tmp_path / 'w.ckpt'
    save_checkpoint_as(state, ckpt, 'mindcv')
    params = ms.load_checkpoint(str(ckpt))
    path = tmp_path / 'w.safetensors'
    ms.save_checkpoint([{'name': k, 'data': v} for k, v in params.items()],
                       str(path), format='safetensors')
    native, info = load_checkpoint_any(path)
    assert info['container'] == 'safetensors' and info['format'] == 'mindcv'
    for k, v in state.items():
        if not k.endswith('num_batches_tracked'):
            assert torch.equal(native[k], v), k
