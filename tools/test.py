"""Test (evaluate) a checkpoint with an mmpretrain or mmdet config.

Examples:
    python tools/test.py configs/res2net/res2net50-w26-s4_8xb32_in1k.py CKPT
    bash tools/dist_test.sh CONFIG CKPT 8 --out results.pkl
"""
import argparse
import copy
import os
import os.path as osp
import sys

# Run from a clone without installing: make ``import res2net_mm`` work.
sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from mmengine.config import Config, ConfigDict, DictAction  # noqa: E402

from res2net_mm.engine import (build_runner,  # noqa: E402
                               exit_after_distributed,
                               finish_distributed)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test (and eval) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--work-dir',
        help='the directory to save the file containing evaluation metrics')
    parser.add_argument(
        '--out',
        type=str,
        help='dump the predictions to a pickle file (.pkl): class scores '
        '(mmpretrain) or detections (mmdet)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override some settings in the used config, the key-value pair '
        'in xxx=yyy format will be merged into config file.')
    parser.add_argument(
        '--show-dir',
        help='directory where painted images will be saved')
    parser.add_argument(
        '--tta',
        action='store_true',
        help='test-time augmentation (flip for classification; mmdet configs '
        'must define tta_model and tta_pipeline)')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    if args.out is not None and not args.out.endswith(('.pkl', '.pickle')):
        parser.error(f'--out must be a .pkl or .pickle file, got {args.out}')
    return args


def _innermost_dataset(dataloader_cfg):
    dataset = dataloader_cfg.dataset
    while 'dataset' in dataset:  # wrappers such as ClassBalancedDataset
        dataset = dataset.dataset
    return dataset


def _enable_tta(cfg, scope):
    if scope == 'mmpretrain':
        cfg.setdefault('tta_model', dict(type='mmpretrain.AverageClsScoreTTA'))
        if 'tta_pipeline' not in cfg:
            pipeline = copy.deepcopy(
                _innermost_dataset(cfg.test_dataloader).pipeline)
            # Average the scores of the image and its horizontal flip; the
            # packing transform runs on each view.
            pipeline[-1] = dict(
                type='TestTimeAug',
                transforms=[[
                    dict(type='RandomFlip', prob=1.),
                    dict(type='RandomFlip', prob=0.)
                ], [pipeline[-1]]])
            cfg.tta_pipeline = pipeline
    elif 'tta_model' not in cfg or 'tta_pipeline' not in cfg:
        raise ValueError(
            f'--tta needs `tta_model` and `tta_pipeline` in {cfg.filename} '
            '(see mmdet configs, e.g. mmdet::_base_/default_runtime.py)')
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
    _innermost_dataset(cfg.test_dataloader).pipeline = cfg.tta_pipeline


def _enable_visualization(cfg, scope, show_dir):
    vis = cfg.default_hooks.get('visualization')
    if vis is None:
        raise ValueError(
            f'--show-dir needs default_hooks.visualization in {cfg.filename}')
    if scope == 'mmdet':
        vis.draw = True
        vis.test_out_dir = show_dir
    else:
        vis.enable = True
        vis.out_dir = show_dir
        vis.interval = 1  # every image, as mmpretrain's test.py does


def merge_args(cfg, args):
    """Apply the command line to the config."""
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    scope = cfg.get('default_scope')
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    cfg.load_from = args.checkpoint
    if args.tta:
        _enable_tta(cfg, scope)
    if args.show_dir:
        _enable_visualization(cfg, scope, args.show_dir)
    return cfg


def _add_dump_metric(runner, scope, out):
    if scope == 'mmdet':
        from mmdet.evaluation import DumpDetResults
        runner.test_evaluator.metrics.append(
            DumpDetResults(out_file_path=out))
    else:
        from mmengine.evaluator import DumpResults
        runner.test_evaluator.metrics.append(DumpResults(out_file_path=out))


def main(argv=None):
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    cfg = merge_args(cfg, args)
    runner = build_runner(cfg, args.launcher)
    if args.out:
        _add_dump_metric(runner, cfg.default_scope, args.out)
    metrics = runner.test()
    finish_distributed()
    return metrics


if __name__ == '__main__':
    main()
    exit_after_distributed()  # a no-op unless run distributed
