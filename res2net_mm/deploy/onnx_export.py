"""Export Res2Net classifiers and backbones to ONNX and check them with
onnxruntime.

onnx / onnxruntime are imported inside the functions: the package itself
needs neither.
"""
from typing import Dict, List, Sequence

import numpy as np
import torch
from torch import nn

from ..utils.io import atomic_write


class BackboneOutputs(nn.Module):
    """A backbone whose tuple output becomes named ONNX outputs."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor):
        return tuple(self.backbone(x))


def output_names(model: nn.Module, task: str) -> List[str]:
    if task == 'classifier':
        return ['logits']
    backbone = model.backbone if isinstance(model, BackboneOutputs) else model
    return [f'stage{i + 1}' for i in backbone.out_indices]


def export_onnx(model: nn.Module,
                path: str,
                task: str = 'classifier',
                size: Sequence[int] = (224, 224),
                batch: int = 1,
                dynamic_batch: bool = True,
                opset: int = 17) -> Dict:
    """Write ``model`` (eval mode) as an ONNX file, atomically.

    Args:
        model (nn.Module): A classifier (one output tensor) or a backbone
            (tuple of stage outputs), in eval mode, deployed or not.
        path (str): Output ``.onnx`` file; written to a temporary name in the
            same folder, then renamed.
        task (str): ``'classifier'`` (output ``logits``) or ``'backbone'``
            (outputs ``stage{i}`` for each index in ``out_indices``).
        size (Sequence[int]): Input height and width of the example input.
        batch (int): Batch of the example input.
        dynamic_batch (bool): Let the batch dimension vary. Defaults to True.
        opset (int): ONNX opset. Defaults to 17.

    Returns:
        dict: ``path``, ``inputs``, ``outputs`` (names) and ``example`` (the
        example input used, for checking).

    Raises:
        ValueError: On a bad task, size or a model in training mode.
    """
    if task not in ('classifier', 'backbone'):
        raise ValueError(f"task must be 'classifier' or 'backbone', got "
                         f'{task!r}')
    if model.training:
        raise ValueError('put the model in eval mode (model.eval()) before '
                         'exporting: training-mode BN does not export')
    if len(size) != 2 or min(size) < 1 or batch < 1:
        raise ValueError(f'size must be (height, width) >= 1 and batch >= 1, '
                         f'got size={tuple(size)}, batch={batch}')
    if task == 'backbone' and not isinstance(model, BackboneOutputs):
        model = BackboneOutputs(model)
    names = output_names(model, task)
    example = torch.randn(batch, 3, *size)
    axes = {'input': {0: 'batch'}}
    axes.update({n: {0: 'batch'} for n in names})

    def write(tmp):
        with torch.no_grad():
            torch.onnx.export(
                model, (example, ), tmp, input_names=['input'],
                output_names=names, opset_version=opset,
                dynamic_axes=axes if dynamic_batch else None, dynamo=False)

    atomic_write(path, write)
    return dict(path=path, inputs=['input'], outputs=names, example=example)


def check_onnx(model: nn.Module,
               path: str,
               inputs: Sequence[torch.Tensor],
               task: str = 'classifier',
               rtol: float = 1e-4) -> Dict[str, float]:
    """Run the ONNX file with onnxruntime and compare with ``model``.

    The error of each output is ``max|ort - torch| / max|torch|``.

    Args:
        model (nn.Module): The PyTorch model the file came from (eval mode).
        path (str): The ONNX file.
        inputs (Sequence[Tensor]): Inputs to compare on (e.g. two batch
            sizes to prove the dynamic batch axis).
        task (str): ``'classifier'`` or ``'backbone'``.
        rtol (float): Largest relative error allowed. Defaults to 1e-4.

    Returns:
        dict: The largest relative error per output name.

    Raises:
        AssertionError: If an output differs by more than ``rtol``.
    """
    import onnx
    import onnxruntime as ort
    onnx.checker.check_model(path)
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    names = [o.name for o in session.get_outputs()]
    errors: Dict[str, float] = {}
    for x in inputs:
        with torch.no_grad():
            expected = model(x)
        if task == 'classifier':
            expected = (expected, )
        got = session.run(None, {'input': x.numpy()})
        if len(got) != len(expected):
            raise AssertionError(f'{path}: {len(got)} outputs, PyTorch has '
                                 f'{len(expected)}')
        for name, g, e in zip(names, got, expected):
            e = e.numpy()
            if g.shape != e.shape:
                raise AssertionError(f'{path}: output {name} has shape '
                                     f'{g.shape}, PyTorch {e.shape}')
            err = float(np.abs(g - e).max() / max(np.abs(e).max(), 1e-12))
            errors[name] = max(errors.get(name, 0.), err)
    bad = {k: v for k, v in errors.items() if v > rtol}
    if bad:
        raise AssertionError(f'{path}: onnxruntime differs from PyTorch by '
                             f'more than {rtol:g} (relative): {bad}')
    return errors
