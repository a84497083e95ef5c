"""tools/model_converters/publish_model.py: training state out, hash in."""
import hashlib

import torch

from res2net_mm import Res2Net

from .test_safety import mmengine_training_checkpoint
from .utils import TINY_V1, randomize, run_tool


def test_publish_training_checkpoint(tmp_path):
    src, model = mmengine_training_checkpoint(tmp_path)
    out = tmp_path / 'release' / 'res2net_tiny.pth'
    out.parent.mkdir()
    # mmengine checkpoints hold pickled objects: the opt-in is required
    result = run_tool('publish_model.py', src, out)
    assert result.returncode == 1 and '--trust' in result.stderr
    assert list(out.parent.iterdir()) == []

    result = run_tool('publish_model.py', src, out, '--trust')
    assert result.returncode == 0, result.stderr
    [published] = list(out.parent.iterdir())
    digest = hashlib.sha256(published.read_bytes()).hexdigest()
    assert published.name == f'res2net_tiny-{digest[:8]}.pth'
    assert published.name in result.stdout
    ckpt = torch.load(published, weights_only=True)  # plain content only
    assert set(ckpt) == {'state_dict', 'meta'}
    assert ckpt['meta'] == dict(epoch=3, iter=30, mmengine_version='0.10.7')
    for k, v in model.state_dict().items():
        assert torch.equal(ckpt['state_dict'][f'backbone.{k}'], v)
    assert published.stat().st_size < src.stat().st_size


def test_publish_ema_weights(tmp_path):
    model = randomize(Res2Net(**TINY_V1))
    ema = randomize(Res2Net(**TINY_V1), seed=5)
    ckpt = dict(state_dict=model.state_dict(),
                ema_state_dict=dict(
                    {f'module.{k}': v for k, v in ema.state_dict().items()},
                    steps=torch.tensor(10)))
    src = tmp_path / 'ema.pth'
    torch.save(ckpt, src)
    out = tmp_path / 'pub.pth'
    assert run_tool('publish_model.py', src, out, '--use-ema').returncode == 0
    [published] = tmp_path.glob('pub-*.pth')
    state = torch.load(published, weights_only=True)['state_dict']
    assert set(state) == set(ema.state_dict())
    assert all(torch.equal(state[k], v) for k, v in ema.state_dict().items())
