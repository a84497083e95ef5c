"""What every res2net_mm backbone shares: the downstream training contract."""
from mmengine.model import BaseModule
from torch.nn.modules.batchnorm import _BatchNorm


class FreezableBackbone(BaseModule):
    """A backbone whose frozen stages and ``norm_eval`` survive ``train()``.

    Subclasses set ``self.norm_eval`` and implement ``_freeze_stages()``
    (called again on every ``train()``: a Runner switches the whole model to
    training mode, which would otherwise wake the frozen BNs up).
    """
    norm_eval = False

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
