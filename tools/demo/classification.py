"""The classification demo: train a small Res2Net on real handwritten digits.

Prepares scikit-learn's digits as an ImageNet-style folder (once), trains
``configs/demo/res2net26-tiny_1xb32_digits.py`` with ``tools/train.py``, evaluates
the final checkpoint on the held-out split with ``tools/test.py``, plots the
training curves with ``tools/analysis_tools/analyze_logs.py`` and prints where
everything is. Runs on a CPU in a few minutes.

Example (from the repository root):
    python tools/demo/classification.py
    python tools/demo/classification.py --max-epochs 2 --work-dir /tmp/demo
"""
import argparse
import glob
import json
import os
import os.path as osp
import subprocess
import sys
import time

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)

DEFAULT_CONFIG = osp.join(REPO, 'configs', 'demo',
                          'res2net26-tiny_1xb32_digits.py')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Train and test a small Res2Net on the digits dataset')
    parser.add_argument('--config', default=DEFAULT_CONFIG, help='config')
    parser.add_argument(
        '--data-root',
        default=osp.join(REPO, 'data', 'digits'),
        help='where the digits image folder is written (once)')
    parser.add_argument(
        '--work-dir',
        default=osp.join(REPO, 'work_dirs', 'demo_digits'),
        help='checkpoints, logs and the curve image')
    parser.add_argument(
        '--max-epochs',
        type=int,
        help='train for this many epochs instead of the config\'s')
    parser.add_argument(
        '--threads',
        type=int,
        default=1,
        help='CPU threads per process (default 1: for this small model one '
        'thread is several times faster than two on 2 cores, where threads '
        'mostly wait for each other)')
    parser.add_argument(
        '--train-args',
        nargs=argparse.REMAINDER,
        default=[],
        help='further arguments for tools/train.py (must come last)')
    return parser.parse_args(argv)


def _step(n, text):
    print(f'\n==> [{n}/4] {text}', flush=True)


def _run(cmd, threads):
    """Run a tool, streaming its output so that progress is visible."""
    print('$ ' + ' '.join(cmd), flush=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads))
    proc = subprocess.run(cmd, cwd=REPO, env=env)
    if proc.returncode != 0:
        raise SystemExit(f'{osp.basename(cmd[1])} failed with exit code '
                         f'{proc.returncode}')


def _run_dirs(work_dir):
    return set(glob.glob(osp.join(work_dir, '2*_*')))


def _new_run_dir(work_dir, before):
    new = sorted(_run_dirs(work_dir) - before)
    if not new:
        raise SystemExit(f'no new log folder under {work_dir}')
    return new[-1]


def _last_checkpoint(work_dir):
    marker = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(marker):
        raise SystemExit(f'training wrote no checkpoint in {work_dir}')
    with open(marker) as f:
        return f.read().strip()


def _test_metrics(run_dir):
    """Metrics written by mmengine's LoggerHook after testing."""
    name = osp.join(run_dir, osp.basename(run_dir) + '.json')
    with open(name) as f:
        lines = [json.loads(line) for line in f if line.strip()]
    return {k: v for k, v in lines[-1].items() if '/' in k}


def main(argv=None):
    args = parse_args(argv)
    start = time.time()
    from res2net_mm.datasets import prepare_digits

    _step(1, f'preparing the digits dataset in {args.data_root}')
    meta = prepare_digits(args.data_root)
    print(f'{meta["num_train"]} training and {meta["num_val"]} held-out '
          f'{meta["image_size"]}x{meta["image_size"]} images, 10 classes',
          flush=True)

    data_opts = [
        f'{loader}.dataset.data_root={args.data_root}'
        for loader in ('train_dataloader', 'val_dataloader',
                       'test_dataloader')
    ]
    train_opts = list(data_opts)
    if args.max_epochs is not None:
        # Warm-up (first scheduler, 2 epochs) and cosine decay (second)
        # shrink with the run; iteration-based, so fractions of epochs work.
        warmup = min(2, args.max_epochs / 10)
        train_opts += [
            f'train_cfg.max_epochs={args.max_epochs}',
            f'param_scheduler.0.end={warmup}',
            f'param_scheduler.1.begin={warmup}',
            f'param_scheduler.1.end={args.max_epochs}'
        ]

    _step(2, f'training {osp.relpath(args.config, REPO)} '
          f'(work dir {args.work_dir})')
    before = _run_dirs(args.work_dir)
    _run([
        sys.executable,
        osp.join(REPO, 'tools', 'train.py'), args.config, '--work-dir',
        args.work_dir, '--cfg-options', *train_opts, *args.train_args
    ], args.threads)
    train_run = _new_run_dir(args.work_dir, before)
    checkpoint = _last_checkpoint(args.work_dir)

    _step(3, f'testing {checkpoint} on the held-out split')
    before = _run_dirs(args.work_dir)
    _run([
        sys.executable,
        osp.join(REPO, 'tools', 'test.py'), args.config, checkpoint,
        '--work-dir', args.work_dir, '--cfg-options', *data_opts
    ], args.threads)
    metrics = _test_metrics(_new_run_dir(args.work_dir, before))

    _step(4, 'plotting the training curves')
    curves = osp.join(args.work_dir, 'curves.png')
    _run([
        sys.executable,
        osp.join(REPO, 'tools', 'analysis_tools', 'analyze_logs.py'),
        'plot_curve', train_run, '--keys', 'loss', 'accuracy/top1', '--out',
        curves, '--title', 'Res2Net on digits'
    ], args.threads)

    elapsed = time.time() - start
    print('\n' + '=' * 60)
    for key, value in metrics.items():
        print(f'held-out {key}: {value:.2f}')
    print(f'checkpoint:   {checkpoint}')
    print(f'curves:       {curves}')
    print(f'logs:         {train_run}')
    print(f'total time:   {elapsed:.0f} s')
    print('=' * 60, flush=True)
    with open(osp.join(args.work_dir, 'demo_result.json'), 'w') as f:
        json.dump(
            dict(metrics=metrics, checkpoint=checkpoint, curves=curves,
                 seconds=elapsed), f, indent=2)
    return metrics


if __name__ == '__main__':
    main()
