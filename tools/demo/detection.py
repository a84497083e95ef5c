"""Detection demo: Mask R-CNN with a small Res2Net on synthetic shapes, on a CPU.

1. Writes the synthetic COCO-format instance segmentation set (deterministic;
   reused when already there) under ``data/synthetic_shapes``.
2. Trains ``configs/detection/demo/mask-rcnn_res2net-tiny_fpn_synthetic-shapes.py``
   with ``tools/train.py``.
3. Evaluates the last checkpoint with ``tools/test.py`` (COCO bbox and segm mAP).
4. Draws the predictions on a few validation images into one PNG.

Run from the repository root::

    python tools/demo/detection.py

It exits non-zero when bbox mAP (0.5:0.95) ends below ``--min-map``.
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
CONFIG = osp.join(REPO, 'configs', 'detection', 'demo',
                  'mask-rcnn_res2net-tiny_fpn_synthetic-shapes.py')


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--data-root', default=osp.join(REPO, 'data',
                                                   'synthetic_shapes'))
    p.add_argument('--work-dir',
                   default=osp.join(REPO, 'work_dirs', 'demo_detection'))
    p.add_argument('--num-train', type=int, default=800)
    p.add_argument('--num-val', type=int, default=100)
    p.add_argument('--epochs', type=int, default=5)
    p.add_argument('--min-map', type=float, default=0.5,
                   help='fail (exit 1) below this bbox mAP (0.5:0.95)')
    p.add_argument('--num-vis', type=int, default=6,
                   help='validation images drawn into predictions.png')
    p.add_argument('--threads', type=int,
                   default=int(os.environ.get('OMP_NUM_THREADS', 1)),
                   help='torch threads for training and testing (default '
                   '$OMP_NUM_THREADS or 1: on a busy 2-core machine, more '
                   'threads than free cores make every step far slower)')
    return p.parse_args(argv)


def _tool(name: str) -> str:
    path = osp.join(REPO, 'tools', name)
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'{path} is missing: the demo runs the OpenMMLab tools '
            f'tools/train.py and tools/test.py of this repository')
    return path


def _run(cmd, what, threads):
    print(f'[demo] {what}: {" ".join(cmd)}', flush=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    # Output streams through, so progress is visible while it runs.
    subprocess.run(cmd, check=True, cwd=REPO, env=env)


def _write_json(obj, path):
    from res2net_mm.utils.io import atomic_write  # on sys.path from main()

    def write(tmp):
        with open(tmp, 'w') as f:
            json.dump(obj, f, indent=2)

    atomic_write(path, write)  # never a half-written file


def _test_metrics(test_dir: str, before: set) -> dict:
    """The metrics mmengine's LoggerHook dumped for the new test run."""
    new = sorted(set(glob.glob(osp.join(test_dir, '*', '*.json'))) - before)
    for path in reversed(new):
        with open(path) as f:
            metrics = json.load(f)
        if 'coco/bbox_mAP' in metrics:
            return metrics
    raise RuntimeError(f'tools/test.py wrote no COCO metrics under {test_dir}')


def visualize(config: str, checkpoint: str, data_root: str, out_png: str,
              num: int = 6, score_thr: float = 0.7, threads: int = 1) -> str:
    """Draw predictions on the first ``num`` val images into one PNG grid."""
    import torch
    torch.set_num_threads(threads)
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import mmcv
    from mmdet.apis import inference_detector, init_detector
    from mmdet.visualization import DetLocalVisualizer

    from res2net_mm.engine.checkpoint import allow_training_checkpoints
    from res2net_mm.utils.io import atomic_write

    # Our own training checkpoint: its message hub holds mmengine objects that
    # torch >= 2.6's weights_only loading refuses unless allow-listed.
    allow_training_checkpoints()
    model = init_detector(config, checkpoint, device='cpu')
    vis = DetLocalVisualizer(name=f'demo-vis-{time.time_ns()}')
    vis.dataset_meta = model.dataset_meta
    files = sorted(glob.glob(osp.join(data_root, 'val', '*.png')))[:num]
    # Each image twice, side by side: as it is, and with the predictions.
    pairs_per_row = 2
    rows = (len(files) + pairs_per_row - 1) // pairs_per_row
    fig, axes = plt.subplots(rows, 2 * pairs_per_row,
                             figsize=(2.6 * 2 * pairs_per_row, 2.8 * rows),
                             squeeze=False)
    for ax in axes.ravel():
        ax.axis('off')
    for i, path in enumerate(files):
        img = mmcv.imread(path, channel_order='rgb')
        result = inference_detector(model, path)
        vis.add_datasample(
            'pred', img, data_sample=result, draw_gt=False, show=False,
            pred_score_thr=score_thr)
        row, col = divmod(i, pairs_per_row)
        axes[row, 2 * col].imshow(img)
        axes[row, 2 * col].set_title(osp.basename(path), fontsize=8)
        axes[row, 2 * col + 1].imshow(vis.get_image())
        axes[row, 2 * col + 1].set_title('prediction', fontsize=8)
    fig.suptitle('Res2Net Mask R-CNN: val predictions (score >= '
                 f'{score_thr})')
    fig.tight_layout()
    try:
        # never a half-written PNG
        atomic_write(out_png, lambda tmp: fig.savefig(tmp, dpi=100,
                                                      format='png'))
    finally:
        plt.close(fig)
    return out_png


def main(argv=None) -> dict:
    args = parse_args(argv)
    train_py, test_py = _tool('train.py'), _tool('test.py')
    sys.path.insert(0, REPO)
    from res2net_mm.datasets.synthetic_coco import SHAPES, \
        generate_synthetic_coco

    start = time.time()
    print(f'[demo] writing the synthetic shapes set to {args.data_root}',
          flush=True)
    summary = generate_synthetic_coco(
        args.data_root, num_train=args.num_train, num_val=args.num_val,
        class_names=SHAPES)
    print(f'[demo] train: {summary["train"]}, val: {summary["val"]}, '
          f'classes: {summary["classes"]}', flush=True)

    data_root = args.data_root.rstrip('/') + '/'
    # Warm up for 100 iterations, or the first fifth of a shortened run.
    batch = 8
    total_iters = args.epochs * -(-summary['train']['images'] // batch)
    warmup = max(1, min(100, total_iters // 5))
    options = [
        f'data_root={data_root}',
        f'train_dataloader.dataset.data_root={data_root}',
        f'val_dataloader.dataset.data_root={data_root}',
        f'test_dataloader.dataset.data_root={data_root}',
        f'val_evaluator.ann_file={data_root}annotations/instances_val.json',
        f'test_evaluator.ann_file={data_root}annotations/instances_val.json',
        f'train_cfg.max_epochs={args.epochs}',
        # No validation during training: tools/test.py evaluates after it.
        f'train_cfg.val_interval={args.epochs + 1}',
        f'default_hooks.checkpoint.interval={args.epochs}',
        f'param_scheduler.0.end={warmup}',
        f'param_scheduler.1.end={args.epochs}',
        f'train_dataloader.batch_size={batch}',
    ]
    os.makedirs(args.work_dir, exist_ok=True)
    _run([sys.executable, train_py, CONFIG, '--work-dir', args.work_dir,
          '--cfg-options', *options], 'training', args.threads)
    train_time = time.time() - start
    checkpoint = osp.join(args.work_dir, f'epoch_{args.epochs}.pth')
    if not osp.isfile(checkpoint):
        raise FileNotFoundError(f'training wrote no {checkpoint}')

    test_dir = osp.join(args.work_dir, 'test')
    before = set(glob.glob(osp.join(test_dir, '*', '*.json')))
    _run([sys.executable, test_py, CONFIG, checkpoint, '--work-dir', test_dir,
          '--cfg-options', *options], 'testing', args.threads)
    metrics = _test_metrics(test_dir, before)

    png = visualize(CONFIG, checkpoint, args.data_root,
                    osp.join(args.work_dir, 'predictions.png'), args.num_vis,
                    threads=args.threads)
    elapsed = time.time() - start
    bbox_map = metrics['coco/bbox_mAP']
    print('[demo] ---------------------------------------------------')
    print(f'[demo] bbox mAP (0.5:0.95) {bbox_map:.3f}   '
          f'bbox mAP@0.5 {metrics["coco/bbox_mAP_50"]:.3f}   '
          f'segm mAP {metrics.get("coco/segm_mAP", float("nan")):.3f}')
    print(f'[demo] time: {elapsed:.0f} s (training {train_time:.0f} s)')
    print(f'[demo] checkpoint:    {checkpoint}')
    print(f'[demo] visualisation: {png}')
    result = dict(metrics=metrics, seconds=round(elapsed, 1),
                  checkpoint=checkpoint, png=png)
    _write_json(result, osp.join(args.work_dir, 'demo_metrics.json'))
    print(f'[demo] metrics:       {args.work_dir}/demo_metrics.json')
    if bbox_map < args.min_map:
        print(f'[demo] FAILED: bbox mAP {bbox_map:.3f} < {args.min_map}',
              file=sys.stderr)
        sys.exit(1)
    return result


if __name__ == '__main__':
    main()
