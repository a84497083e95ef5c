"""Fetch published Res2Net weights by name, verified, optionally converted.

Examples::

    # what exists (name, publisher, file format, reported top-1)
    python tools/model_converters/download.py --list
    # into the cache (torch hub's checkpoints folder); prints the path
    python tools/model_converters/download.py official/res2net101_v1b_26w_4s
    # a copy of the published file, or converted as convert.py does
    python tools/model_converters/download.py mindcv/res2net50 \
        --out r2n50.pth --to native
    # on a machine without internet access: a folder (or URL) of the files
    python tools/model_converters/download.py mindcv/res2net50 \
        --mirror /shared/res2net_weights

The same names work as ``res2net_mm://NAME`` in ``init_cfg``, ``load_from``
and ``convert.py``. Any failure exits non-zero with a one-line error, leaving
nothing in the cache and nothing at ``--out``.
"""
import argparse
import importlib.util
import os
import sys


def load_convert_tool():
    """convert.py (next to this file) as a module: its conversion is reused."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                        'convert.py')
    spec = importlib.util.spec_from_file_location('_res2net_mm_convert', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# convert.py (its formats and its conversion) serves this tool too.
CONVERT = load_convert_tool()


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Fetch published Res2Net weights by name (see --list), '
        'check their sha256, and optionally convert them.')
    parser.add_argument('name', nargs='?', help='entry name, e.g. '
                        'official/res2net50_26w_4s (res2net_mm:// optional)')
    parser.add_argument('--list', action='store_true',
                        help='print the table of published files and exit')
    parser.add_argument('--out', default=None,
                        help='also write the file here (as published, or '
                        'converted with --to)')
    parser.add_argument('--to', dest='dst_format', default=None,
                        choices=CONVERT.OUT_FORMATS,
                        help='convert to this format (as convert.py --to); '
                        'needs --out')
    parser.add_argument('--mirror', default=None,
                        help='folder or base URL holding the files, tried '
                        'before the publisher (default: '
                        '$RES2NET_MM_WEIGHTS_MIRROR)')
    parser.add_argument('--force', action='store_true',
                        help='overwrite --out if it exists')
    parser.add_argument('--no-progress', action='store_true',
                        help='no progress bar')
    args = parser.parse_args(argv)
    if not args.list and not args.name:
        parser.error('give a NAME (see --list)')
    if args.dst_format and not args.out:
        parser.error('--to needs --out')
    return args


def table_lines():
    """The --list output: name, source, format, reported figure."""
    from res2net_mm.converters.published import WEIGHTS, accuracy_text
    rows = [('name', 'source', 'format', 'top-1 / box AP')]
    for w in WEIGHTS.values():
        figure = (f'box AP {w.box_ap:.1f}' if w.top1 is None
                  and w.box_ap is not None else accuracy_text(w, w.top1))
        rows.append((w.name, w.source, w.file_format, figure))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return [f'{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  '
            f'{r[2]:<{widths[2]}}  {r[3]}' for r in rows]


def main(argv=None) -> int:
    args = parse_args(argv)
    from res2net_mm.converters.download import copy_atomically, fetch_weights
    from res2net_mm.converters.errors import CheckpointError
    from res2net_mm.converters.published import get_weights

    if args.list:
        print('\n'.join(table_lines()))
        return 0
    try:
        weights = get_weights(args.name)
    except KeyError as e:
        print(f'error: {e.args[0]}', file=sys.stderr)
        return 2
    if args.out and os.path.exists(args.out) and not args.force:
        print(f'error: {args.out} exists; pass --force to overwrite it',
              file=sys.stderr)
        return 2
    try:
        path = fetch_weights(weights.name, mirror=args.mirror,
                             progress=False if args.no_progress else None)
    except CheckpointError as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    print(f'{weights.name}: {path} ({weights.file_format}, sha256 '
          f'{weights.sha256_kind} check passed)'
          if weights.sha256_kind != 'unpublished' else
          f'{weights.name}: {path} ({weights.file_format}; no published '
          'hash, container checked)')
    if not args.out:
        return 0
    if args.dst_format is None:
        try:
            copy_atomically(path, args.out)
        except OSError as e:
            print(f'error: cannot write {args.out}: {e}', file=sys.stderr)
            return 1
        print(f'copied to {args.out}')
        return 0
    argv = [path, args.out, '--to', args.dst_format, '--arch', weights.arch]
    if args.force:
        argv.append('--force')
    return CONVERT.main(argv)


if __name__ == '__main__':
    sys.exit(main())
