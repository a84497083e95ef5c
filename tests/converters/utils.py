"""Helpers shared by the converter tests."""
import contextlib
import io
import os
import subprocess
import sys

import torch

from ..models.utils import (assert_close, load_tool,  # noqa: F401
                           mindcv_net, randomize)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
# Small but real architectures (every key kind, a fraction of the cost).
TINY_V1 = dict(depth=26, base_width=4, base_channels=16, stem_channels=16)
TINY_V1B = dict(TINY_V1, deep_stem=True, avg_down=True)


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
    module = load_tool(f'model_converters/{name}')
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
