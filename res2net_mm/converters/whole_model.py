"""A checkpoint of any supported format as the state dict of a whole model.

``load_from=`` (``tools/train.py``), ``tools/test.py CONFIG CHECKPOINT`` and
``dist_test.sh`` load weights into the config's whole model: an mmpretrain
``ImageClassifier`` (``backbone.*``, ``head.fc.*``), a
:class:`~res2net_mm.models.Res2NetClassifier` (``backbone.*``, ``fc.*``) or an
mmdet detector (``backbone.*``, ``neck.*``, heads). Files already in the
model's own naming (mmengine checkpoints of the same model, also mmdet's and
mmpretrain's, whose deep-stem names the backbone renames when it loads them)
are none of this module's business: they load as mmengine loads them.

Any other Res2Net file (MindCV ``.ckpt``, official / timm ``.pth``,
safetensors, an mmpretrain or mmdet backbone-only file) is renamed here by
:func:`to_model_state`: the backbone must fit the model's backbone exactly
(every key, every shape; nothing is loaded otherwise), the file's linear
classifier goes to the model's linear head when the class counts agree, and
what the file does not hold (a detector's neck and heads, a head of another
class count) stays as the model initialised it, said in the summary line.
MindCV's builders default to 1001 classes: such a head does not fit a
1000-class config and stays at init, as the converters keep all 1001 rows and
guess no background row.
"""
import re
from typing import Dict, Mapping, Optional, Tuple

import torch

from ..models.res2net import Res2Net
from .detect import (FormatDetectionError, describe_variant, detect_variant,
                     to_native)
from .errors import CheckpointError, WeightMismatchError
from .keymaps import native_stem_names
from .loading import _short, check_fit
from .validate import check_finite

# Model parts that are configuration, not weights a checkpoint provides
# (e.g. a data preprocessor's mean / std buffers).
_NOT_WEIGHTS = ('data_preprocessor.', )


class ModelMismatchError(CheckpointError, WeightMismatchError):
    """The file's weights do not fit the model's backbone; nothing loaded."""


def is_res2net_backbone(module) -> bool:
    """Whether ``module`` is res2net_mm's :class:`Res2Net` (the key maps'
    target; the DLA and bLRes2Net families have no foreign namings here)."""
    return isinstance(module, Res2Net)


def find_res2net_model(model) -> Optional[torch.nn.Module]:
    """The module whose ``backbone`` is a res2net_mm Res2Net, or None.

    Looks at the model itself and at a test-time-augmentation wrapper's
    ``module`` (``tools/test.py --tta``).
    """
    for candidate in (model, getattr(model, 'module', None)):
        if candidate is not None and is_res2net_backbone(
                getattr(candidate, 'backbone', None)):
            return candidate
    return None


def linear_head_prefix(model) -> Optional[str]:
    """``'head.fc.'`` (mmpretrain ``LinearClsHead``), ``'fc.'``
    (:class:`Res2NetClassifier`) or None (no linear classifier: detectors,
    other heads)."""
    head = getattr(model, 'head', None)
    if isinstance(getattr(head, 'fc', None), torch.nn.Linear):
        return 'head.fc.'
    if isinstance(getattr(model, 'fc', None), torch.nn.Linear):
        return 'fc.'
    return None


def in_model_naming(state: Mapping, model_state: Mapping) -> bool:
    """Whether a file's state dict already names the model's backbone.

    True when every backbone weight of the model is in ``state`` under its
    own name (deep-stem ``backbone.stem.N`` names of mmdet / mmpretrain
    count: the backbone renames them itself when it loads them).

    Args:
        state (Mapping): The file's flat state dict (``module.`` removed).
        model_state (Mapping): ``model.state_dict()``.
    """
    wanted = [k for k in model_state if k.startswith('backbone.')
              and not k.endswith('num_batches_tracked')
              and '.conv_offset.' not in k]
    if not wanted:
        return False
    keys = set(state)
    stem = [k[len('backbone.'):] for k in keys
            if k.startswith('backbone.stem.')]
    keys.update('backbone.' + new for new in native_stem_names(stem).values())
    return all(k in keys for k in wanted)


def to_model_state(state: Mapping,
                   model_state: Mapping,
                   head_prefix: Optional[str],
                   source: str,
                   fmt: str = 'auto',
                   num_stages: Optional[int] = None,
                   allow_nonfinite: bool = False) -> Tuple[Dict, Dict]:
    """Rename Res2Net weights of any naming to a whole model's state dict.

    Args:
        state (Mapping): The file's flat state dict (any supported naming).
        model_state (Mapping): The model's ``state_dict()`` (shapes are read).
        head_prefix (str, optional): Where the model keeps its linear
            classifier (see :func:`linear_head_prefix`); None if it has none.
        source (str): The file, for messages.
        fmt (str): Naming of the file, ``'auto'`` to detect it.
        num_stages (int, optional): Stages of the model's backbone; weights
            of later stages are dropped.
        allow_nonfinite (bool): Accept NaN / infinite values. Defaults to
            False.

    Returns:
        tuple[dict, dict]: The state dict for ``model.load_state_dict`` (only
        keys the model has, every shape equal) and a report: ``format``,
        ``variant``, ``backbone`` (tensors), ``head`` (what happened to the
        classifier), ``kept_init`` (model keys left as initialised),
        ``dropped`` (file keys left out, with reasons).

    Raises:
        CheckpointError: The file is not Res2Net weights, or holds NaN /
            infinite values.
        ModelMismatchError: The backbone weights do not fit the model's
            backbone; one line naming the mismatched keys, both shapes and
            the file's architecture.
    """
    hint = 'Use the config of the architecture the file holds, or another file'
    try:
        native, report = to_native(state, fmt)
    except FormatDetectionError as e:
        raise CheckpointError(source, f'cannot be loaded into the model: {e}',
                              hint) from None
    try:
        variant = detect_variant(native)
    except FormatDetectionError:
        variant = None  # an unnamed architecture: the model's decides below
    check_finite(native, source, allow_nonfinite)
    backbone_state = {k[len('backbone.'):]: v for k, v in model_state.items()
                      if k.startswith('backbone.')}
    fit = check_fit(backbone_state, native, num_stages)
    problems = [f'{k}: file {tuple(src)} vs model {tuple(dst)}'
                for k, (src, dst) in fit['mismatched'].items()]
    problems += [f'{k}: not in the file' for k in fit['missing']]
    problems += [f'{k}: not in the model' for k in fit['unexpected']]
    if problems:
        more = f' (+{len(problems) - 3} more)' if len(problems) > 3 else ''
        raise ModelMismatchError(
            source, f'the weights do not fit the model\'s backbone, nothing '
            f'was loaded: {"; ".join(problems[:3])}{more}; the file holds '
            f'{_architecture(variant)}', hint)
    out = {'backbone.' + k: v for k, v in fit['fits'].items()}
    for k in fit['kept_init']:  # deformable offsets start at zero
        out['backbone.' + k] = torch.zeros_like(backbone_state[k])
    dropped = dict(report['dropped'])
    dropped.update({k: r for k, r in fit['dropped'].items()
                    if not k.startswith('fc.')})
    head, head_loaded = 'none in the model', False
    classifier = {k: v for k, v in native.items() if k.startswith('fc.')}
    if head_prefix is not None:
        wanted = {k[len(head_prefix):]: v for k, v in model_state.items()
                  if k.startswith(head_prefix)}
        if not classifier:
            head = 'kept at init: the file has no classifier'
        elif {k: tuple(v.shape) for k, v in classifier.items()} == \
                {'fc.' + k: tuple(v.shape) for k, v in wanted.items()}:
            out.update({head_prefix + k[len('fc.'):]: v
                        for k, v in classifier.items()})
            head_loaded = True
            head = f'{head_prefix}* loaded ({wanted["weight"].shape[0]} ' \
                'classes)'
        else:
            head = (f'kept at init: the file\'s classifier has '
                    f'{classifier["fc.weight"].shape[0]} classes, the '
                    f'model\'s {wanted["weight"].shape[0]}')
    if classifier and not head_loaded:
        dropped.update({k: 'classifier not loaded' for k in classifier})
    kept = [k for k in model_state if k not in out
            and not k.startswith(_NOT_WEIGHTS)
            and not k.endswith('num_batches_tracked')]
    return out, dict(format=report['format'], variant=variant,
                     backbone=len(fit['fits']), head=head,
                     head_loaded=head_loaded, kept_init=kept,
                     dropped=dropped)


def _architecture(variant: Optional[Dict]) -> str:
    if variant is None:
        return 'a Res2Net whose widths name no base_width'
    return describe_variant(variant)


def describe_model_load(report: Dict, source: str, container: str) -> str:
    """One line: what was detected and converted, what stays at init."""
    line = (f'{source}: {container} file in {report["format"]} naming '
            f'({_architecture(report["variant"])}), converted on load: '
            f'{report["backbone"]} backbone tensors; head {report["head"]}')
    kept = [k for k in report['kept_init'] if not re.match(r'^(head\.)?fc\.',
                                                           k)]
    if kept:
        line += f'; kept at init (not in the file): {_short(kept)}'
    return line


__all__ = ['ModelMismatchError', 'to_model_state', 'in_model_naming',
           'find_res2net_model', 'linear_head_prefix', 'describe_model_load',
           'is_res2net_backbone']
