"""What the installed torch can do, looked up once.

Every torch API newer than 2.1 or private to torch that res2net_mm uses is
reached through here (or through the capability flag next to its one user,
such as ``HAS_BN_WITH_UPDATE`` in :mod:`res2net_mm.models.hierarchy`), with
the public path as the fallback; tests force each fallback.
"""
import sys

import torch
from torch.nn.modules import module as _module


def _dynamo_is_compiling() -> bool:
    """``torch.compiler.is_compiling`` for torch < 2.3, which has only the
    private ``torch._dynamo.is_compiling``. Nothing compiles before dynamo
    is imported, so this does not import it."""
    return 'torch._dynamo' in sys.modules and torch._dynamo.is_compiling()


# Public since torch 2.3.
_is_compiling = getattr(torch.compiler, 'is_compiling', _dynamo_is_compiling)


def exporting() -> bool:
    """Whether this forward is being scripted, traced, compiled or exported
    to ONNX (eager-only kernels and layout switches must step aside)."""
    if torch.jit.is_scripting() or torch.jit.is_tracing():
        return True
    if _is_compiling():
        return True
    onnx = getattr(torch, 'onnx', None)
    return bool(onnx is not None and onnx.is_in_onnx_export())


# torch keeps the hooks registered with register_module_forward_hook in these
# private dicts; without them we cannot tell, and assume there may be some.
_HAS_GLOBAL_HOOK_DICTS = all(
    isinstance(getattr(_module, name, None), dict)
    for name in ('_global_forward_hooks', '_global_forward_pre_hooks'))


def global_forward_hooks() -> bool:
    """Whether a global forward (pre-)hook is registered (True when this
    torch does not say)."""
    if not _HAS_GLOBAL_HOOK_DICTS:
        return True
    return bool(_module._global_forward_hooks
                or _module._global_forward_pre_hooks)


def has_forward_hooks(modules) -> bool:
    """Whether any of ``modules`` or a global hook may watch a forward."""
    return global_forward_hooks() or any(
        m._forward_hooks or m._forward_pre_hooks for m in modules)
