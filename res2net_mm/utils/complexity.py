"""Parameter and multiply-accumulate counting (conv + linear), as papers report."""
from typing import Sequence

import torch
from torch import nn


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (BN running statistics are buffers, not counted)."""
    return sum(p.numel() for p in model.parameters()
               if p.requires_grad or not trainable_only)


@torch.no_grad()
def count_macs(model: nn.Module,
               input_shape: Sequence[int] = (1, 3, 224, 224)) -> int:
    """Multiply-accumulates of every Conv2d and Linear for one forward pass.

    Norms, activations, pooling and additions are left out, which is the
    convention of the Res2Net paper, timm and most model zoos ("GMACs" or
    "FLOPs"). Counts are per sample when ``input_shape[0] == 1``.

    Args:
        model (nn.Module): The model; its train/eval mode is restored after.
        input_shape (Sequence[int]): Shape of the dummy input.
    """
    total = 0

    def conv_hook(module, inputs, output):
        nonlocal total
        kernel = module.weight.shape[2] * module.weight.shape[3]
        per_output = kernel * module.in_channels // module.groups
        total += output.numel() * per_output

    def linear_hook(module, inputs, output):
        nonlocal total
        total += output.numel() * module.in_features

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    try:
        param = next(model.parameters(), None)
        device = param.device if param is not None else 'cpu'
        model(torch.zeros(*input_shape, device=device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return total
