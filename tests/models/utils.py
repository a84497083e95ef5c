"""Helpers shared by the test suite (models, converters, downstream)."""
import importlib.util
import os.path as osp
import socket

import numpy as np
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

# Small but real architectures: every code path, a fraction of the cost.
TINY = dict(depth=26, base_width=4, base_channels=16, stem_channels=16)
REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def load_tool(rel_path: str):
    """Import a script under ``tools/`` (e.g. ``'analysis_tools/get_flops.py'``)
    as a module, to call its functions in this process."""
    name = '_res2net_mm_tool_' + rel_path[:-3].replace('/', '_')
    spec = importlib.util.spec_from_file_location(
        name, osp.join(REPO, 'tools', rel_path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@torch.no_grad()
def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights and BN statistics, so no parameter is trivially 0/1."""
    g = torch.Generator().manual_seed(seed)
    for name, t in sorted(model.state_dict().items()):
        if not t.is_floating_point():
            if name.endswith('num_batches_tracked'):
                t.fill_(int(torch.randint(1, 1000, (1, ), generator=g)))
            continue
        if name.endswith('running_var'):
            t.copy_(torch.rand(t.shape, generator=g) + 0.5)
        elif name.endswith('running_mean'):
            t.copy_(torch.randn(t.shape, generator=g) * 0.1)
        else:
            fan_in = t[0].numel() if t.dim() > 1 else 1
            t.copy_(torch.randn(t.shape, generator=g) / fan_in**0.5)
    return model


def batchnorms(model: nn.Module):
    return [m for m in model.modules() if isinstance(m, _BatchNorm)]


def assert_close(actual, expected, rtol=1e-6):
    """Relative to the reference's scale: exact up to float reassociation."""
    scale = expected.abs().max().clamp_min(1e-12)
    err = (actual - expected).abs().max() / scale
    assert err <= rtol, f'max relative error {err:.3g} > {rtol:g}'


def mindcv_net(ms, name, seed=0, num_classes=None):
    """A MindCV model with random weights and random BN statistics.

    Built with MindCV's builder function, whose default head has 1001 classes
    (``create_model`` would pass 1000), unless ``num_classes`` is given.
    """
    from mindcv.models import res2net
    kwargs = {} if num_classes is None else dict(num_classes=num_classes)
    net = getattr(res2net, name)(pretrained=False, **kwargs)
    rng = np.random.default_rng(seed)
    for p in net.get_parameters():
        shape = p.shape
        if p.name.endswith('moving_variance'):
            value = rng.random(shape) + 0.5
        elif p.name.endswith('moving_mean'):
            value = rng.standard_normal(shape) * 0.1
        else:
            fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
            value = rng.standard_normal(shape) / fan_in**0.5
        p.set_data(ms.Tensor(value.astype(np.float32)))
    net.set_train(False)
    return net
