"""Parameters and FLOPs of classification configs.

Examples:
    python tools/analysis_tools/get_flops.py \
        configs/res2net/res2net50-w26-s4_8xb32_in1k.py
    python tools/analysis_tools/get_flops.py configs/res2net/*.py --shape 224

FLOPs are counted as multiply-accumulates (MACs, 1 per multiply-add, the
convention of the Res2Net paper, timm and mmpretrain's tables) with mmengine's
jit FlopAnalyzer. "conv+linear" counts the convolutions and the classifier (the
figure of res2net_mm.models.variants); "all" adds the normalisation and pooling
operators the analyzer knows.
"""
import argparse
import json
import os.path as osp
import sys

sys.path.insert(
    0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

# Operators of convolutions and fully connected layers in a jit trace.
CONV_LINEAR_OPS = ('conv', 'linear', 'addmm', 'matmul', 'bmm', 'einsum')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Count the parameters and FLOPs of classifier configs')
    parser.add_argument('configs', nargs='+', help='config file paths')
    parser.add_argument(
        '--shape',
        type=int,
        nargs='+',
        default=[224, 224],
        help='input image size (one value: square)')
    parser.add_argument(
        '--json', action='store_true', help='print one json line per config')
    args = parser.parse_args(argv)
    if len(args.shape) == 1:
        args.shape = args.shape * 2
    if len(args.shape) != 2:
        parser.error('--shape takes one or two integers')
    return args


def _image_to_logits(model):
    """The classifier as a module image -> logits, for the jit tracer."""
    import torch

    class ImageToLogits(torch.nn.Module):

        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x):
            return self.model.head(self.model.extract_feat(x))

    return ImageToLogits(model)


def complexity(config: str, shape=(224, 224)) -> dict:
    """Build the model of an mmpretrain config and count params and MACs.

    Args:
        config (str): Path of an mmpretrain config.
        shape (tuple[int, int]): Input height and width.

    Returns:
        dict: ``params`` (all parameters), ``macs`` (conv + linear),
        ``macs_all`` (every supported operator) and ``by_operator``.
    """
    import torch
    from mmengine.analysis import FlopAnalyzer
    from mmengine.config import Config
    from mmengine.registry import DefaultScope

    from res2net_mm.engine import register_scope_modules

    cfg = Config.fromfile(config)
    scope = register_scope_modules(cfg)
    if scope != 'mmpretrain':
        raise ValueError(f'{config}: get_flops.py counts classifiers '
                         f'(default_scope mmpretrain), not {scope} models')
    from mmpretrain.registry import MODELS
    with DefaultScope.overwrite_default_scope(scope):
        model = MODELS.build(cfg.model)
    model.eval()
    params = sum(p.numel() for p in model.parameters())
    inputs = (torch.zeros(1, 3, *shape), )
    with torch.no_grad():
        analyzer = FlopAnalyzer(_image_to_logits(model), inputs)
        analyzer.unsupported_ops_warnings(False)
        analyzer.uncalled_modules_warnings(False)
        by_op = dict(analyzer.by_operator())
    macs = sum(v for k, v in by_op.items()
               if any(op in k for op in CONV_LINEAR_OPS))
    return dict(
        config=config,
        shape=list(shape),
        params=params,
        macs=macs,
        macs_all=sum(by_op.values()),
        by_operator=by_op)


def main(argv=None):
    args = parse_args(argv)
    results = []
    for config in args.configs:
        r = complexity(config, tuple(args.shape))
        results.append(r)
        if args.json:
            print(json.dumps(r))
            continue
        print('=' * 60)
        print(f'Config: {config}')
        print(f'Input shape: {tuple(args.shape)}')
        print(f'Params: {r["params"]:,} ({r["params"] / 1e6:.2f} M)')
        print(f'FLOPs (conv+linear MACs): {r["macs"] / 1e9:.3f} G')
        print(f'FLOPs (all operators): {r["macs_all"] / 1e9:.3f} G')
    return results


if __name__ == '__main__':
    main()
