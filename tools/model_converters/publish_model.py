"""Prepare a training checkpoint for release, in OpenMMLab's manner.

Strips the training state (optimizer, parameter schedulers, message hub, EMA
buffers ...), keeps the model weights and plain metadata, saves the result and
appends the first 8 hex digits of its sha256 to the name::

    python tools/model_converters/publish_model.py \
        work_dirs/res2net50/epoch_100.pth res2net50_in1k.pth --trust
    # -> res2net50_in1k-1a2b3c4d.pth

The published file holds only tensors and plain values, so it loads with
``torch.load(..., weights_only=True)``. Training checkpoints written by
mmengine hold pickled objects (message hub buffers), so reading them needs
``--trust``.
"""
import argparse
import hashlib
import io
import sys

# Entries of mmengine / mmcv training checkpoints that are not for release.
TRAINING_STATE = ('optimizer', 'param_schedulers', 'message_hub', 'hook_msgs',
                  'ema_state_dict', 'scaler', 'amp', 'loss_scaler')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Strip training state from a checkpoint and append the '
        'sha256 prefix to its name.')
    parser.add_argument('in_file', help='training checkpoint')
    parser.add_argument('out_file', help='output name (the hash is appended)')
    parser.add_argument('--use-ema', action='store_true',
                        help='publish the EMA weights (ema_state_dict) '
                        'instead of the raw ones')
    parser.add_argument('--trust', action='store_true',
                        help='allow a full unpickle of the input (mmengine '
                        'training checkpoints need it; runs code from the '
                        'file: only for files you trust)')
    return parser.parse_args(argv)


def process_checkpoint(in_file, out_file, use_ema=False, trust=False) -> str:
    """Publish ``in_file`` as ``<out_file stem>-<sha256[:8]>.pth``.

    Args:
        in_file (str): The training checkpoint.
        out_file (str): Output name before the hash suffix.
        use_ema (bool): Release the EMA weights. Defaults to False.
        trust (bool): Allow a full unpickle of ``in_file``. Defaults to False.

    Returns:
        str: The path written.
    """
    import torch
    from res2net_mm.converters.errors import CheckpointError
    from res2net_mm.converters.reading import load_torch_file, sniff_container
    from res2net_mm.converters.saving import plain_values
    from res2net_mm.utils.io import atomic_write

    if sniff_container(in_file) != 'torch':
        raise CheckpointError(in_file, 'is not a PyTorch checkpoint',
                              'convert it first (convert.py)')
    ckpt = load_torch_file(in_file, trust, 'cpu')
    if not isinstance(ckpt, dict):
        raise CheckpointError(in_file, f'holds a {type(ckpt).__name__}, not '
                              'a checkpoint dict')
    if 'state_dict' not in ckpt:
        if not all(isinstance(v, torch.Tensor) for v in ckpt.values()):
            raise CheckpointError(in_file, 'has no state_dict entry')
        ckpt = dict(state_dict=ckpt)
    if use_ema:
        ema = ckpt.get('ema_state_dict')
        if not isinstance(ema, dict):
            raise CheckpointError(in_file, 'has no ema_state_dict (trained '
                                  'without EMAHook?)')
        # mmengine's averaged model keeps the weights under 'module.'.
        weights = {k[len('module.'):]: v for k, v in ema.items()
                   if k.startswith('module.')}
    else:
        weights = ckpt['state_dict']
    state = {k: v.detach().cpu() for k, v in weights.items()
             if isinstance(v, torch.Tensor)}
    if not state:
        raise CheckpointError(in_file, 'holds no weights')
    out = dict(state_dict=state)
    if isinstance(ckpt.get('meta'), dict):
        # Plain values only: the release must load with weights_only=True.
        out['meta'] = plain_values({k: v for k, v in ckpt['meta'].items()
                              if k not in TRAINING_STATE})

    stem = out_file[:-len('.pth')] if out_file.endswith('.pth') else out_file
    # Serialised first: the name carries the hash of the bytes written.
    buffer = io.BytesIO()
    torch.save(out, buffer)
    data = buffer.getvalue()
    final = f'{stem}-{hashlib.sha256(data).hexdigest()[:8]}.pth'

    def write(tmp):
        with open(tmp, 'wb') as f:
            f.write(data)

    return atomic_write(final, write)


def main(argv=None) -> int:
    args = parse_args(argv)
    from res2net_mm.converters.errors import (CheckpointError,
                                              UnsafeCheckpointError)
    try:
        final = process_checkpoint(args.in_file, args.out_file,
                                   use_ema=args.use_ema, trust=args.trust)
    except UnsafeCheckpointError as e:
        print(f'refused: {e}', file=sys.stderr)
        return 1
    except CheckpointError as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    print(f'published {final}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
