"""Print (or save) the full config after inheritance and --cfg-options.

Example:
    python tools/analysis_tools/print_config.py \
        configs/res2net/res2net50-w26-s4_8xb32_in1k.py \
        --cfg-options train_dataloader.batch_size=64
"""
import argparse
import os.path as osp
import sys

# Run from a clone without installing: make ``import res2net_mm`` work.
sys.path.insert(
    0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmengine.config import Config, DictAction  # noqa: E402

from res2net_mm.utils.io import atomic_write  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Print the whole config')
    parser.add_argument('config', help='config file path')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override some settings in the used config, the key-value pair '
        'in xxx=yyy format will be merged into config file.')
    parser.add_argument(
        '--out', help='also write the config to this file (.py/.json/.yaml)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    print(cfg.pretty_text)
    if args.out:
        # The temporary name keeps the extension, which picks the format.
        atomic_write(args.out, cfg.dump)
    return cfg


if __name__ == '__main__':
    main()
