"""Convert Res2Net weights between formats.

Examples::

    # MindCV .ckpt -> res2net_mm (format and variant detected)
    python tools/model_converters/convert.py res2net50-f42cf71b.ckpt r2n50.pth
    # official / timm .pth -> mmdet pretrain naming
    python tools/model_converters/convert.py res2net101_v1b_26w_4s.pth \
        r2n101_v1d_mmdet.pth --to mmdet --arch res2net101_v1b_26w_4s
    # whole mmdet detector -> backbone as safetensors
    python tools/model_converters/convert.py faster_rcnn.pth r2n.safetensors \
        --from mmdet --to safetensors

It prints what it detected, what it mapped, and what it dropped and why. The
output is written to a temporary file and renamed, so on any failure nothing
is written. Before that, every tensor's shape is checked against the
architecture (detected, or --arch) and NaN / infinite values are refused
(--allow-nonfinite accepts them).
"""
import argparse
import os
import sys

IN_FORMATS = ('auto', 'official', 'timm', 'mmpretrain', 'mmdet', 'mindcv',
              'safetensors', 'native')
OUT_FORMATS = ('native', 'timm', 'mmpretrain', 'mmdet', 'safetensors',
               'mindcv')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Convert Res2Net weights between formats (official, '
        'timm, mmpretrain, mmdet, MindCV .ckpt, safetensors, res2net_mm).')
    parser.add_argument('src', help='source weight file (path, URL, '
                        'open-mmlab://NAME or res2net_mm://NAME: a published '
                        'file, see download.py --list)')
    parser.add_argument('dst', help='destination file')
    parser.add_argument('--from', dest='src_format', default='auto',
                        choices=IN_FORMATS,
                        help='naming of the source (default: detect it)')
    parser.add_argument('--to', dest='dst_format', default='native',
                        choices=OUT_FORMATS,
                        help='format to write (default: native res2net_mm)')
    parser.add_argument('--arch', default=None,
                        help='named variant the weights must be (e.g. '
                        'res2net50_v1b_26w_4s); a file of another '
                        'architecture is refused')
    parser.add_argument('--allow-nonfinite', action='store_true',
                        help='accept weights with NaN or infinite values '
                        '(refused by default)')
    parser.add_argument('--drop-classifier', action='store_true',
                        help='leave the classifier (fc) out of the output')
    parser.add_argument('--trust', action='store_true',
                        help='allow a full unpickle of a PyTorch training '
                        'checkpoint that holds more than tensors (runs code '
                        'from the file: only for files you trust)')
    parser.add_argument('--force', action='store_true',
                        help='overwrite the destination if it exists')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    # Importing here keeps --help fast and lets errors below be reported.
    from res2net_mm.converters.errors import (CheckpointError,
                                              UnsafeCheckpointError)
    from res2net_mm.converters.loading import describe_load, \
        load_checkpoint_any
    from res2net_mm.converters.saving import save_checkpoint_as

    if os.path.abspath(args.src) == os.path.abspath(args.dst):
        print('error: source and destination are the same file',
              file=sys.stderr)
        return 2
    if os.path.exists(args.dst) and not args.force:
        print(f'error: {args.dst} exists; pass --force to overwrite it',
              file=sys.stderr)
        return 2
    try:
        native, info = load_checkpoint_any(
            args.src, fmt=args.src_format, trust=args.trust, arch=args.arch,
            allow_nonfinite=args.allow_nonfinite)
        print(describe_load(info))
        if info['format'] == 'mmdet':
            print('note: mmdet skips the stage pool at stride 1; build the '
                  "backbone with stage_pool='strided' to reproduce mmdet's "
                  'outputs exactly')
        _, written = save_checkpoint_as(
            native, args.dst, args.dst_format,
            meta=dict(source=args.src if args.src.startswith(
                'res2net_mm://') else os.path.basename(args.src),
                      source_format=info['format']),
            drop_classifier=args.drop_classifier,
            allow_nonfinite=args.allow_nonfinite)
    except UnsafeCheckpointError as e:
        print(f'refused: {e}', file=sys.stderr)
        return 1
    except (CheckpointError, ValueError, KeyError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    kept_fc = any(k.startswith(('fc.', 'head.fc.', 'classifier.'))
                  for k in written)
    if any(k.startswith('fc.') for k in native) and not kept_fc:
        print('dropped the classifier (fc): '
              + ('--drop-classifier' if args.drop_classifier else
                 f'{args.dst_format} weights are backbone-only'))
    print(f'wrote {len(written)} tensors to {args.dst} '
          f'({args.dst_format})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
