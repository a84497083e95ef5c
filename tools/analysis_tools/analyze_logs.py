"""Plot training curves (loss, accuracy, lr ...) from mmengine logs to a PNG.

Examples:
    python tools/analysis_tools/analyze_logs.py plot_curve work_dirs/demo \
        --keys loss accuracy/top1 --out curves.png
    python tools/analysis_tools/analyze_logs.py cal_train_time work_dirs/demo

A log is a work dir (every run under it, in time order, so that a resumed run
continues the curve), a run dir ``<work_dir>/<timestamp>``, or a json log
(``vis_data/scalars.json`` or ``vis_data/<timestamp>.json``).
"""
import argparse
import glob
import json
import os.path as osp
import sys
from typing import Dict, List

# Run from a clone without installing: make ``import res2net_mm`` work.
sys.path.insert(
    0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

# Training entries carry 'iter' (mmengine's LoggerHook); validation and test
# entries only 'step' (the epoch for epoch-based training).
TRAIN = 'train'
VAL = 'val'


def find_json_logs(path: str) -> List[str]:
    """Json scalar logs of a work dir, a run dir or a json file, oldest first."""
    if osp.isfile(path):
        return [path]
    if not osp.isdir(path):
        raise FileNotFoundError(f'{path}: no such work dir or json log')
    runs = sorted(glob.glob(osp.join(path, '*', 'vis_data'))) or sorted(
        glob.glob(osp.join(path, 'vis_data')))
    logs = []
    for vis in runs:
        name = osp.basename(osp.dirname(vis)) + '.json'
        for candidate in (osp.join(vis, 'scalars.json'), osp.join(vis, name)):
            if osp.isfile(candidate):
                logs.append(candidate)
                break
    if not logs:
        raise FileNotFoundError(
            f'{path} holds no mmengine json log (<run>/vis_data/scalars.json); '
            'is it a work dir of tools/train.py?')
    return logs


def load_log(paths: List[str]) -> Dict[str, Dict[str, List]]:
    """Read json logs into ``{'train': {key: [(x, y)]}, 'val': {...}}``.

    Training values are indexed by iteration, validation values by epoch. A
    resumed run repeats some steps; the later value wins.
    """
    series: Dict[str, Dict[str, Dict]] = {TRAIN: {}, VAL: {}}
    for path in paths:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                entry = json.loads(line)
                mode = TRAIN if 'iter' in entry else VAL
                x = entry['iter'] if mode == TRAIN else entry.get('step')
                for key, value in entry.items():
                    if key in ('iter', 'step', 'epoch') or not isinstance(
                            value, (int, float)):
                        continue
                    series[mode].setdefault(key, {})[x] = value
    return {
        mode: {k: sorted(v.items())
               for k, v in keys.items()}
        for mode, keys in series.items()
    }


def plot_curve(logs: List[str], keys: List[str], out: str,
               title: str = None) -> str:
    """Plot ``keys`` of the logs, one panel per key, and save a PNG.

    Args:
        logs (list[str]): Work dirs, run dirs or json logs; one line each.
        keys (list[str]): Keys such as ``loss``, ``lr``, ``accuracy/top1``.
        out (str): Output image (written to a temporary name, then renamed).
        title (str, optional): Figure title.

    Returns:
        str: ``out``.
    """
    # Imported with the plotting libraries: cal_train_time needs none of them.
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    from res2net_mm.utils.io import atomic_write

    data = [(log, load_log(find_json_logs(log))) for log in logs]
    fig, axes = plt.subplots(
        1, len(keys), figsize=(5 * len(keys), 4), squeeze=False)
    for ax, key in zip(axes[0], keys):
        found = False
        for log, series in data:
            for mode, xlabel in ((TRAIN, 'iteration'), (VAL, 'epoch')):
                points = series[mode].get(key)
                if not points:
                    continue
                found = True
                xs, ys = zip(*points)
                label = osp.basename(osp.normpath(log))
                ax.plot(xs, ys, marker='o' if mode == VAL else None,
                        label=f'{label} ({mode})')
                ax.set_xlabel(xlabel)
        if not found:
            plt.close(fig)
            available = sorted({k for _, s in data for m in s.values()
                                for k in m})
            raise KeyError(f'no log has the key {key!r}; available: '
                           f'{", ".join(available)}')
        ax.set_title(key)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize='small')
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    # The format follows the extension (the temporary name keeps it); PNG
    # without one.
    fmt = osp.splitext(out)[1][1:] or 'png'
    try:
        atomic_write(out, lambda tmp: fig.savefig(tmp, dpi=100, format=fmt))
    finally:
        plt.close(fig)
    return out


def cal_train_time(logs: List[str]) -> None:
    """Print the average iteration time of each log."""
    for log in logs:
        series = load_log(find_json_logs(log))
        times = [t for _, t in series[TRAIN].get('time', [])]
        if not times:
            print(f'{log}: no training iteration times')
            continue
        print(f'{log}: average iter time {sum(times) / len(times):.4f} s '
              f'over {len(times)} logged iterations')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Analyze json logs')
    sub = parser.add_subparsers(dest='task', required=True)
    plot = sub.add_parser('plot_curve', help='plot curves to an image')
    plot.add_argument('logs', nargs='+', help='work dirs or json logs')
    plot.add_argument(
        '--keys',
        nargs='+',
        default=['loss', 'accuracy/top1'],
        help='the metrics to plot')
    plot.add_argument('--title', help='title of the figure')
    plot.add_argument(
        '--out', default='curves.png', help='output image (.png)')
    timing = sub.add_parser('cal_train_time', help='average iteration time')
    timing.add_argument('logs', nargs='+', help='work dirs or json logs')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.task == 'plot_curve':
        out = plot_curve(args.logs, args.keys, args.out, args.title)
        print(f'curves saved to {out}')
    else:
        cal_train_time(args.logs)


if __name__ == '__main__':
    main()
