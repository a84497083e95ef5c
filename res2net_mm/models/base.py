"""What every res2net_mm backbone shares: the downstream training contract and
the memory format it computes in."""
from typing import Optional, Sequence, Tuple

import torch
from mmengine.model import BaseModule
from torch.nn.modules.batchnorm import _BatchNorm

from ..deploy.ops import exporting


class FreezableBackbone(BaseModule):
    """A backbone whose frozen stages and ``norm_eval`` survive ``train()``,
    and which may compute in channels_last whatever its input's layout.

    Subclasses set ``self.norm_eval``, implement ``_freeze_stages()`` (called
    again on every ``train()``: a Runner switches the whole model to training
    mode, which would otherwise wake the frozen BNs up), and call
    :meth:`_set_channels_last` and :meth:`_enter_layout`.
    """
    norm_eval = False
    channels_last: Optional[bool] = False
    _auto_channels_last = False

    def _freeze_stages(self):
        raise NotImplementedError

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
        if channels_last not in (None, True, False):
            raise TypeError(f'channels_last must be None (automatic), True or '
                            f'False, got {channels_last!r}')
        self.channels_last = channels_last
        self._auto_channels_last = auto

    def _use_channels_last(self, x: torch.Tensor) -> bool:
        if self.channels_last is not None:
            return self.channels_last
        # oneDNN runs these convs faster in channels_last; GPUs and graph
        # capture (tracing, export, compile) choose their own layouts.
        return (self._auto_channels_last and x.device.type == 'cpu'
                and x.dim() == 4 and not exporting())

    def _enter_layout(self, x: torch.Tensor) -> Tuple[torch.Tensor, bool]:
        """The input in the layout to compute in, and whether the outputs
        must be given back as NCHW (the input was not channels_last:
        downstream code may view() them as NCHW)."""
        if not self._use_channels_last(x):
            return x, False
        cl = torch.channels_last
        return x.contiguous(memory_format=cl), not x.is_contiguous(
            memory_format=cl)

    @staticmethod
    def _leave_layout(out: torch.Tensor, restore: bool) -> torch.Tensor:
        """An output in the input's layout (see :meth:`_enter_layout`)."""
        return out.contiguous() if restore else out
