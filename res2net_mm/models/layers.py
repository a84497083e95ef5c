"""Small building blocks used by the Res2Net block."""
import torch
from torch import nn


def drop_path(x: torch.Tensor, drop_prob: float, training: bool) -> torch.Tensor:
    """Drop whole residual branches per sample (stochastic depth).

    Kept samples are scaled by ``1 / (1 - drop_prob)`` so the expected value is
    unchanged and nothing needs rescaling at test time.
    """
    if drop_prob == 0. or not training:
        return x
    keep_prob = 1 - drop_prob
    shape = (x.shape[0], ) + (1, ) * (x.ndim - 1)
    mask = x.new_empty(shape).bernoulli_(keep_prob)
    return x * mask / keep_prob


class DropPath(nn.Module):
    """Stochastic depth as a module (identity in eval mode).

    Args:
        drop_prob (float): Probability of dropping the branch. Defaults to 0.
    """

    def __init__(self, drop_prob: float = 0.):
        super().__init__()
        if not 0. <= drop_prob < 1.:
            raise ValueError(
                f'drop_prob must be in [0, 1), got {drop_prob}')
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.drop_prob, self.training)

    def extra_repr(self) -> str:
        return f'drop_prob={self.drop_prob}'


class SELayer(nn.Module):
    """Squeeze-and-Excitation (Hu et al., CVPR 2018) as in SE-ResNet.

    Args:
        channels (int): Input and output channels.
        ratio (int): Channel reduction of the bottleneck. Defaults to 16.
    """

    def __init__(self, channels: int, ratio: int = 16):
        super().__init__()
        hidden = max(channels // ratio, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.gate(self.fc2(self.relu(self.fc1(self.pool(x)))))
        return x * w
