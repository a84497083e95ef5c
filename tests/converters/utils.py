"""Helpers shared by the converter tests."""
import contextlib
import importlib.util
import io
import os
import subprocess
import sys

import numpy as np
import torch
from torch import nn

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
# Small but real architectures (every key kind, a fraction of the cost).
TINY_V1 = dict(depth=26, base_width=4, base_channels=16, stem_channels=16)
TINY_V1B = dict(TINY_V1, deep_stem=True, avg_down=True)


@torch.no_grad()
def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights and BN statistics, so no tensor is trivially 0 or 1."""
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


def assert_close(actual, expected, rtol=1e-6):
    """Relative to the reference's scale: exact up to float reassociation."""
    scale = expected.abs().max().clamp_min(1e-12)
    err = (actual - expected).abs().max() / scale
    assert err <= rtol, f'max relative error {err:.3g} > {rtol:g}'


def assert_same_state(a, b):
    """Bit-exact equality of two state dicts (keys, dtypes, values)."""
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        assert torch.equal(a[k], b[k]), k


def assert_weights_from(path, theirs, naming='timm'):
    """Every tensor of a library's state dict (renamed from ``naming``) is in
    the converted file, bit for bit; nothing else but a classifier is."""
    from res2net_mm.converters import FROM_FORMAT, load_checkpoint_any
    native, _ = load_checkpoint_any(path)
    expected = FROM_FORMAT[naming](dict(theirs))
    for k, v in expected.items():
        assert torch.equal(native[k], v), k
    assert all(k in expected or k.startswith('fc.') for k in native)


def tool_path(name):
    return os.path.join(ROOT, 'tools', 'model_converters', name)


def run_script(name, *args):
    """Run a tools/model_converters script in a new process, as users do."""
    return subprocess.run([sys.executable, tool_path(name), *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT,
                          timeout=600)


def run_tool(name, *args):
    """Call a script's ``main(argv)`` in this process (saves the start-up of
    a new interpreter per call); returns what :func:`run_script` returns."""
    spec = importlib.util.spec_from_file_location(
        f'_tool_{name[:-3]}', tool_path(name))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = module.main([str(a) for a in args])
    return subprocess.CompletedProcess(args, code, out.getvalue(),
                                       err.getvalue())


def build_in_scope(scope, cfg):
    """Build a model from a config with ``scope`` (mmpretrain or mmdet) as
    the default scope, as their tools do, without leaking it to other
    tests."""
    from mmengine.registry import DefaultScope
    if scope == 'mmdet':
        from mmdet.registry import MODELS
        from mmdet.utils import register_all_modules
    else:
        from mmpretrain.registry import MODELS
        from mmpretrain.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    with DefaultScope.overwrite_default_scope(scope):
        return MODELS.build(cfg)


def mindcv_net(ms, name, seed=0):
    """A MindCV model with random weights and random BN statistics."""
    from mindcv.models import res2net
    # The builder itself, whose default head has 1001 classes (MindCV's
    # create_model would pass num_classes=1000).
    net = getattr(res2net, name)(pretrained=False)
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
