"""What every res2net_mm backbone shares: the downstream training contract and
the memory format it computes in."""
from typing import Callable, Dict, Optional, Sequence, Tuple

import torch
from mmengine.model import BaseModule
from mmengine.model.weight_init import constant_init
from torch.nn.modules.batchnorm import _BatchNorm

from ..registry import get_weight_loader
from ..utils.torch_compat import exporting
from .bottle2neck import Bottle2neck


# Kaiming for convs, 1 / 0 for norms: the init of every res2net_mm backbone.
DEFAULT_INIT_CFG = [
    dict(type='Kaiming', layer=['Conv2d']),
    dict(type='Constant', val=1, layer=['_BatchNorm', 'GroupNorm'])
]


class _LaidOutOnceBuilt(type(BaseModule)):
    """Lays a backbone's weights out (:meth:`FreezableBackbone.
    _lay_out_weights`) once its whole ``__init__``, a subclass's included,
    has run: a model wrapped in DDP straight away is wrapped with them."""

    def __call__(cls, *args, **kwargs):
        backbone = super().__call__(*args, **kwargs)
        backbone._lay_out_weights()
        return backbone


class FreezableBackbone(BaseModule, metaclass=_LaidOutOnceBuilt):
    """A backbone whose frozen stages and ``norm_eval`` survive ``train()``,
    and which may compute in channels_last whatever its input's layout.

    Its 1x1 conv weights take the strides of the memory format it computes
    in (see :meth:`_lay_out_weights`) when it is built, moved or converted
    (``to()``, ``cuda()``, ``float()``...) and when ``channels_last`` is set,
    so that DDP's gradient buckets match the gradients.

    Subclasses set ``self.norm_eval``, implement ``_frozen_modules()`` (frozen
    again on every ``train()``: a Runner switches the whole model to training
    mode, which would otherwise wake the frozen BNs up), and call
    :meth:`_set_channels_last` and :meth:`_enter_layout`.
    """
    norm_eval = False
    _channels_last: Optional[bool] = False
    _auto_channels_last = False

    def _frozen_modules(self) -> list:
        """The modules ``frozen_stages`` freezes (stem first)."""
        raise NotImplementedError

    def _freeze_stages(self):
        for m in self._frozen_modules():
            m.eval()
            for param in m.parameters():
                param.requires_grad = False

    def _init_from_pretrained(self) -> bool:
        """Load ``init_cfg=dict(type='Pretrained', ...)`` with the loader the
        converters register (any supported format, strict by default:
        mmengine's own Pretrained init warns on mismatches and trains from
        random init). Returns whether it did."""
        if not (isinstance(self.init_cfg, dict)
                and self.init_cfg.get('type') == 'Pretrained'):
            return False
        get_weight_loader('Pretrained')(self, self.init_cfg)
        self._is_init = True
        return True

    def _zero_init_residual(self) -> None:
        """Zero the last norm of every block, so that each residual branch
        starts as zero."""
        for m in self.modules():
            if isinstance(m, Bottle2neck):
                constant_init(m.norm3, 0)

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    @staticmethod
    def _check_outputs(out_indices: Sequence[int], num_outputs: int,
                       frozen_stages: int, max_frozen: int,
                       unit: str = 'stage') -> None:
        """Check ``out_indices`` against ``num_outputs`` stages (or levels)
        and ``frozen_stages`` against ``-1 .. max_frozen``."""
        if not out_indices:
            raise ValueError(f'out_indices must name at least one {unit}')
        for i in out_indices:
            if not -num_outputs <= i < num_outputs:
                raise IndexError(
                    f'out_indices entry {i} is out of range: valid are 0 to '
                    f'{num_outputs - 1} (or -{num_outputs} to -1)')
        if not -1 <= frozen_stages <= max_frozen:
            raise ValueError(f'frozen_stages must be -1 (none) to '
                             f'{max_frozen} (all), got {frozen_stages}')

    @property
    def channels_last(self) -> Optional[bool]:
        """The memory format setting (see :meth:`_set_channels_last`).
        Setting it lays the weights out for the new choice."""
        return self._channels_last

    @channels_last.setter
    def channels_last(self, channels_last: Optional[bool]) -> None:
        if channels_last not in (None, True, False):
            raise TypeError(f'channels_last must be None (automatic), True or '
                            f'False, got {channels_last!r}')
        self._channels_last = channels_last
        self._lay_out_weights()

    def _set_channels_last(self, channels_last: Optional[bool],
                           auto: bool = True) -> None:
        """Store the ``channels_last`` argument.

        Args:
            channels_last (bool, optional): None: channels_last on CPU where
                ``auto`` allows it; True: always; False: never.
            auto (bool): Whether None may pick channels_last (False where
                the configuration needs NCHW or bit-identity with NCHW
                implementations).
        """
        self._auto_channels_last = auto
        self.channels_last = channels_last

    def _use_channels_last(self, x: torch.Tensor) -> bool:
        if self.channels_last is not None:
            return self.channels_last
        # oneDNN runs these convs faster in channels_last; GPUs and graph
        # capture (tracing, export, compile) choose their own layouts.
        return (self._auto_channels_last and x.device.type == 'cpu'
                and x.dim() == 4 and not exporting())

    def _enter_layout(self, x: torch.Tensor) -> Tuple[torch.Tensor, bool]:
        """The input in the layout to compute in, and whether the outputs
        must be given back as NCHW: the input was not channels_last, and
        downstream code may view() them as NCHW. Channels_last 1x1 weights
        make their convs compute in channels_last even where the input is
        left as it is (tracing, export, compile), hence the check there
        too; on outputs that are NCHW already it costs nothing."""
        cl = torch.channels_last
        restore = not x.is_contiguous(memory_format=cl)
        if self._use_channels_last(x):
            x = x.contiguous(memory_format=cl)
        return x, restore

    def _run_stages(self, x: torch.Tensor, names: Sequence[str],
                    restore: bool) -> Tuple[torch.Tensor, ...]:
        """Run the named stages in turn; the outputs of ``out_indices``, in
        the input's layout (see :meth:`_enter_layout`)."""
        outs = []
        for i, name in enumerate(names):
            x = getattr(self, name)(x)
            if i in self.out_indices:
                outs.append(self._leave_layout(x, restore))
        return tuple(outs)

    @staticmethod
    def _leave_layout(out: torch.Tensor, restore: bool) -> torch.Tensor:
        """An output in the input's layout (see :meth:`_enter_layout`)."""
        return out.contiguous() if restore else out

    def _apply(self, fn: Callable, recurse: bool = True):
        # to(), cuda(), cpu(), float(), half()... all come here: the weights
        # take the layout of the device they are moved to.
        super()._apply(fn, recurse)
        self._lay_out_weights()
        return self

    def _lay_out_weights(self) -> None:
        """Give the 4-D weights whose NCHW and channels_last strides differ
        only in size-1 dimensions (those of 1x1 convs) the strides of the
        memory format this backbone computes in on their device.

        A weight shaped ``(O, I, 1, 1)`` has NCHW strides ``(I, 1, 1, 1)`` and
        channels_last strides ``(I, 1, I, I)``: the same bytes, strides that
        differ only in size-1 dimensions. A conv computing in channels_last
        returns its gradient with the channels_last strides, and autograd's
        gradient layout contract keeps them (it ignores size-1 dimensions),
        but DDP compares every stride with its bucket views, which it builds
        from the parameters' strides when it wraps the model: each such
        gradient would be copied, every step ("Grad strides do not match
        bucket view strides"). The other weights keep their layout (autograd
        gives their gradients the parameter's strides): an NCHW input traced
        or exported keeps the NCHW stem, and the values, the bytes and
        ``is_contiguous()`` of every tensor stay as they were, so state dicts
        and checkpoints do not change.

        The format is channels_last where :meth:`_use_channels_last` picks it
        for an input on the weight's device, or where the other 4-D weights
        are channels_last (the model was converted with
        ``to(memory_format=torch.channels_last)``); NCHW otherwise.
        """
        cl = torch.channels_last
        weights = [p for p in self.parameters() if p.dim() == 4]
        if not weights:  # called while __init__ sets channels_last
            return
        converted = any(
            p.is_contiguous(memory_format=cl) and not p.is_contiguous()
            for p in weights)
        formats: Dict[torch.device, torch.memory_format] = {}

        def memory_format(device: torch.device) -> torch.memory_format:
            if device not in formats:
                # what forward would choose for an input on this device
                probe = torch.empty((0, 0, 0, 0), device=device)
                formats[device] = cl if converted or self._use_channels_last(
                    probe) else torch.contiguous_format
            return formats[device]

        def restride(t: torch.Tensor) -> torch.Tensor:
            if t.dim() != 4 or not (t.is_contiguous()
                                    and t.is_contiguous(memory_format=cl)):
                return t  # no choice of strides: leave it
            strides = _dense_strides(t.shape, memory_format(t.device))
            # a view of the same bytes: nothing is copied
            return t if t.stride() == strides else t.as_strided(
                t.shape, strides)

        # the parameters, their gradients and any 4-D buffers, in every
        # submodule, as Module.to() converts them
        super()._apply(restride)


def _dense_strides(shape: Sequence[int],
                   memory_format: torch.memory_format) -> Tuple[int, ...]:
    """The strides of a dense 4-D tensor of ``shape`` in ``memory_format``
    (``torch.contiguous_format`` or ``torch.channels_last``)."""
    _, c, h, w = shape
    if memory_format == torch.channels_last:
        return (h * w * c, 1, w * c, c)
    return (c * h * w, h * w, w, 1)
