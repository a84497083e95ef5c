"""Export a Res2Net classifier or backbone (multi-level outputs) to ONNX.

The model is built from a named variant, optionally loaded from any
checkpoint format res2net_mm reads, switched to deploy mode (BNs folded; off
with ``--no-deploy``), exported with a dynamic batch axis and checked with
onnxruntime against the PyTorch model (max relative error <= ``--rtol``,
default 1e-4) on two batch sizes.

Examples::

    python tools/deployment/export_onnx.py res2net50_26w_4s r2n50.onnx
    python tools/deployment/export_onnx.py res2net50_v1b_26w_4s bb.onnx \\
        --task backbone --out-indices 0 1 2 3 --checkpoint ckpt.pth
"""
import argparse
import ast
import os
import sys

import torch

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__),
                                                '..', '..')))


def _override(text: str):
    if '=' not in text:
        raise argparse.ArgumentTypeError(
            f'expected KEY=VALUE (e.g. depth=26), got {text!r}')
    key, value = text.split('=', 1)
    try:
        value = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        pass  # a plain string
    return key, value


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('arch', help='named variant, e.g. res2net50_26w_4s')
    p.add_argument('output', help='the .onnx file to write')
    p.add_argument('--task', choices=['classifier', 'backbone'],
                   default='classifier')
    p.add_argument('--checkpoint', default=None,
                   help='weights in any supported format (default: random)')
    p.add_argument('--num-classes', type=int, default=1000)
    p.add_argument('--out-indices', type=int, nargs='+', default=[0, 1, 2, 3],
                   help='backbone stages to output (task backbone)')
    p.add_argument('--size', type=int, nargs='+', default=[224],
                   help='input size: S or H W')
    p.add_argument('--opset', type=int, default=17)
    p.add_argument('--no-deploy', action='store_true',
                   help='keep the BNs (default: fold them first)')
    p.add_argument('--no-check', action='store_true',
                   help='skip the onnxruntime comparison')
    p.add_argument('--rtol', type=float, default=1e-4)
    p.add_argument('--override', type=_override, nargs='*', default=[],
                   metavar='KEY=VALUE',
                   help='backbone arguments, e.g. depth=26 base_width=4')
    args = p.parse_args(argv)
    if len(args.size) not in (1, 2):
        p.error(f'--size takes S or H W, got {args.size}')
    return args


def build(args):
    from res2net_mm.models import Res2Net, Res2NetClassifier
    kwargs = dict(args.override)
    if args.task == 'classifier':
        model = Res2NetClassifier(num_classes=args.num_classes,
                                  arch=args.arch, **kwargs)
        target = model
    else:
        model = Res2Net(arch=args.arch, out_indices=args.out_indices,
                        **kwargs)
        target = model
    if args.checkpoint:
        from res2net_mm.converters.loading import load_checkpoint_any
        state, _ = load_checkpoint_any(args.checkpoint)
        if args.task == 'classifier':
            fc = {k[3:]: v for k, v in state.items() if k.startswith('fc.')}
            state = {k: v for k, v in state.items() if not k.startswith('fc.')}
            model.backbone.load_state_dict(state, strict=True)
            if fc:
                model.fc.load_state_dict(fc, strict=True)
        else:
            state = {k: v for k, v in state.items() if not k.startswith('fc.')}
            target.load_state_dict(state, strict=True)
    model.eval()
    if not args.no_deploy:
        from res2net_mm.deploy import fuse_res2net
        fuse_res2net(model, fuse_others=False)
    return model


def main(argv=None):
    from res2net_mm.deploy.onnx_export import check_onnx, export_onnx
    args = parse_args(argv)
    size = args.size * 2 if len(args.size) == 1 else args.size
    model = build(args)
    info = export_onnx(model, args.output, task=args.task, size=size,
                       opset=args.opset)
    print(f'wrote {args.output} (outputs: {", ".join(info["outputs"])})')
    if not args.no_check:
        inputs = [info['example'], torch.randn(2, 3, *size)]
        errors = check_onnx(model, args.output, inputs, task=args.task,
                            rtol=args.rtol)
        print('onnxruntime check passed, max relative error per output: '
              + ', '.join(f'{k} {v:.2e}' for k, v in errors.items()))
    return info


if __name__ == '__main__':
    main()
