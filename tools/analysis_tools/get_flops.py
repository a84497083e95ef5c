"""Parameters and FLOPs of classification, detection and segmentation configs.

Examples:
    python tools/analysis_tools/get_flops.py \
        configs/res2net/res2net50-w26-s4_8xb32_in1k.py
    python tools/analysis_tools/get_flops.py configs/res2net/*.py --shape 224
    python tools/analysis_tools/get_flops.py \
        configs/detection/faster-rcnn_res2net50-v1b_fpn_1x_coco.py \
        --shape 800 1333
    python tools/analysis_tools/get_flops.py \
        configs/segmentation/upernet_res2net101-v1b-d8_4xb4-160k_ade20k-512x512.py
    # a toolbox's own config, with only the backbone type swapped
    MMDET=$(python -c 'import mmdet; print(mmdet.__path__[0])')
    python tools/analysis_tools/get_flops.py \
        $MMDET/.mim/configs/faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py \
        --cfg-options model.backbone.type=res2net_mm.Res2Net

One forward of one image of ``--shape`` (H W) is counted, as the toolboxes' own
get_flops tools count it: through the model's data preprocessor (which pads
detector inputs to its size divisor), then ``mode='tensor'``:
classifiers (mmpretrain) backbone, neck and head to the logits; detectors
(mmdet) backbone, neck and heads (two-stage: the RPN, its proposals and the
RoI heads, without the post-processing); segmentors (mmseg) backbone, neck and
decode head (an auxiliary head only runs in training: its parameters are
listed, it has no MACs). Default shapes: 224x224 for classifiers, 800x1333 for
detectors (COCO's test scale), the config's crop size for segmentors
(``data_preprocessor.size``, else 512x512).

FLOPs are multiply-accumulates (MACs, 1 per multiply-add, the convention of
the Res2Net paper, timm and mmpretrain's tables), counted by
``res2net_mm.utils.count_complexity`` (torch's FlopCounterMode), the counter
of the variant table and of ``benchmark.py``. "conv+linear" counts the
convolutions and matrix products (the figure of res2net_mm.models.variants);
"+norm/pool" adds normalisation, pooling and resampling.

The RoI heads of a two-stage detector run on the proposals the RPN keeps,
which depend on the weights: here they are random (seeded, so the figure is
reproducible) and the tool prints how many RoIs each stage ran on. The heads
run as mmdet's ``mode='tensor'`` runs them (Mask R-CNN's mask head on the
first 100 RoIs, cascade mask heads on every RoI of each stage).
"""
import argparse
import importlib
import json
import os.path as osp
import sys

sys.path.insert(
    0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

DEFAULT_SHAPES = dict(classifier=(224, 224), detector=(800, 1333),
                      segmentor=(512, 512))
# The model kinds the tool can feed: the toolbox, its base class, the name.
KINDS = (('mmpretrain', 'mmpretrain.models.classifiers', 'BaseClassifier',
          'classifier'),
         ('mmdet', 'mmdet.models.detectors', 'BaseDetector', 'detector'),
         ('mmseg', 'mmseg.models.segmentors', 'BaseSegmentor', 'segmentor'))


class ConfigProblem(ValueError):
    """The config cannot be counted; the message names it and why."""


def parse_args(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(
        description='Count the parameters and FLOPs (MACs) of classifier, '
        'detector and segmentor configs')
    parser.add_argument('configs', nargs='+', help='config file paths')
    parser.add_argument(
        '--shape',
        type=int,
        nargs='+',
        default=None,
        help='input image height and width (one value: square); default '
        '224 (classifiers), 800 1333 (detectors), the crop size '
        '(segmentors)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of every config, key=value (e.g. '
        'model.backbone.type=res2net_mm.Res2Net)')
    parser.add_argument(
        '--json', action='store_true', help='print one json line per config')
    args = parser.parse_args(argv)
    if args.shape is not None:
        if len(args.shape) == 1:
            args.shape = args.shape * 2
        if len(args.shape) != 2 or min(args.shape) < 1:
            parser.error('--shape takes one or two positive integers')
    return args


def _one_line(error: BaseException) -> str:
    text = error.args[0] if isinstance(error, KeyError) and error.args \
        else str(error)
    return ' '.join(str(text).split()) or type(error).__name__


def build_model(config: str, cfg_options=None):
    """The model of a config, built in its toolbox's scope (random weights).

    Returns:
        tuple: ``(cfg, model, kind)``, kind ``'classifier'``, ``'detector'``
        or ``'segmentor'``.

    Raises:
        ConfigProblem: No such file, no model, no default scope, a model that
            does not build or is none of the three kinds.
    """
    import torch
    from mmengine.config import Config
    from mmengine.registry import DefaultScope

    from res2net_mm.engine import register_scope_modules

    try:
        cfg = Config.fromfile(config)
    except Exception as e:  # syntax errors, missing files and bases
        raise ConfigProblem(f'{config}: cannot read the config '
                            f'({_one_line(e)})') from None
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if not isinstance(cfg.get('model'), dict):
        raise ConfigProblem(f'{config}: the config has no `model` dict: '
                            'give a model config, not a base (dataset, '
                            'schedule, runtime) config')
    try:
        scope = register_scope_modules(cfg)
        registry = importlib.import_module(f'{scope}.registry')
    except (ValueError, ImportError) as e:
        raise ConfigProblem(f'{config}: {_one_line(e)}') from None
    try:
        # Seeded: a two-stage detector's proposals depend on its weights.
        with torch.random.fork_rng(devices=[]), \
                DefaultScope.overwrite_default_scope(scope):
            torch.manual_seed(0)
            model = registry.MODELS.build(cfg.model)
    except Exception as e:  # unknown types, bad arguments of any module
        raise ConfigProblem(
            f'{config}: cannot build model type '
            f'{cfg.model.get("type")!r} ({_one_line(e)})') from None
    for package, module, base, kind in KINDS:
        if package not in sys.modules:
            continue  # a model of this toolbox would have imported it
        if isinstance(model, getattr(importlib.import_module(module), base)):
            return cfg, model, kind
    raise ConfigProblem(
        f'{config}: unknown model type {type(model).__name__} (model.type='
        f'{cfg.model.get("type")!r}): get_flops.py counts mmpretrain '
        'classifiers, mmdet detectors and mmseg segmentors')


def _default_shape(cfg, kind):
    if kind == 'segmentor':
        size = cfg.model.get('data_preprocessor', {}).get('size')
        if size:
            return tuple(size)
    return DEFAULT_SHAPES[kind]


def pack_inputs(model, kind: str, shape):
    """One random image of ``shape`` through the model's data preprocessor,
    with the data sample a detector or segmentor reads its sizes from."""
    import torch
    height, width = shape
    image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8,
                          generator=torch.Generator().manual_seed(0))
    meta = dict(img_shape=(height, width), ori_shape=(height, width))
    if kind == 'detector':
        from mmdet.structures import DetDataSample
        samples = [DetDataSample(metainfo=dict(meta, scale_factor=(1., 1.)))]
    elif kind == 'segmentor':
        from mmseg.structures import SegDataSample
        samples = [SegDataSample(metainfo=dict(meta, pad_shape=meta[
            'img_shape']))]
    else:
        samples = None
    with torch.no_grad():
        data = model.data_preprocessor(
            dict(inputs=[image], data_samples=samples), False)
    return data['inputs'], data['data_samples']


def _roi_counter(model):
    """Record the number of RoIs every RoI extractor of a detector gets."""
    rois, handles = [], []
    try:
        from mmdet.models.roi_heads.roi_extractors import BaseRoIExtractor
    except ImportError:
        return rois, handles

    def record(module, args, kwargs):
        boxes = args[1] if len(args) > 1 else kwargs['rois']
        rois.append(int(boxes.shape[0]))

    for m in model.modules():
        if isinstance(m, BaseRoIExtractor):
            handles.append(m.register_forward_pre_hook(record,
                                                       with_kwargs=True))
    return rois, handles


def complexity(config: str, shape=None, cfg_options=None) -> dict:
    """Build the model of a config and count params and MACs.

    Args:
        config (str): Path of an mmpretrain, mmdet or mmseg config.
        shape (tuple[int, int], optional): Input height and width; default
            by model kind (see the module docstring).
        cfg_options (dict, optional): Settings merged into the config.

    Returns:
        dict: ``config``, ``model`` (class), ``kind``, ``shape`` (the input
        counted, after padding), ``params``, ``macs`` (conv + linear),
        ``macs_all`` (+ norms, pooling, resampling), ``by_operator``,
        ``by_module`` (``{child: {params, macs, macs_all}}``) and, for
        two-stage detectors, ``rois`` (RoIs per head stage).

    Raises:
        ConfigProblem: A config that cannot be counted.
    """
    from res2net_mm.utils import count_complexity, count_params

    cfg, model, kind = build_model(config, cfg_options)
    model.eval()
    inputs, samples = pack_inputs(model, kind,
                                  tuple(shape or _default_shape(cfg, kind)))
    rois, handles = _roi_counter(model)
    try:
        counted = count_complexity(model, inputs, samples, mode='tensor')
    finally:
        for h in handles:
            h.remove()
    parts = {}
    for name, child in model.named_children():
        ran = counted.by_module.get(name, dict(macs=0, macs_all=0))
        params = count_params(child)
        if params or ran['macs_all']:
            parts[name] = dict(params=params, **ran)
    result = dict(
        config=config,
        model=type(model).__name__,
        kind=kind,
        shape=list(inputs.shape[-2:]),
        params=count_params(model),
        macs=counted.macs,
        macs_all=counted.macs_all,
        by_operator=counted.by_operator,
        by_module=parts)
    if rois:
        result['rois'] = rois
    return result


def report(r: dict) -> str:
    """The human-readable lines of one :func:`complexity` result."""
    lines = [
        '=' * 60,
        f'Config: {r["config"]}',
        f'Model: {r["model"]} ({r["kind"]})',
        f'Input shape: {tuple(r["shape"])}',
        f'Params: {r["params"]:,} ({r["params"] / 1e6:.2f} M)',
        f'FLOPs (conv+linear MACs): {r["macs"] / 1e9:.3f} G',
        f'FLOPs (+norm/pool MACs): {r["macs_all"] / 1e9:.3f} G',
    ]
    for name, part in r['by_module'].items():
        lines.append(f'  {name}: {part["params"] / 1e6:.2f} M params, '
                     f'{part["macs"] / 1e9:.3f} G conv+linear MACs')
    if 'rois' in r:
        lines.append(f'RoIs per head stage: {r["rois"]} (depend on the '
                     'weights: random here)')
    return '\n'.join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    failed = 0
    for config in args.configs:
        try:
            r = complexity(config, args.shape, args.cfg_options)
        except ConfigProblem as e:
            print(f'error: {e}', file=sys.stderr)
            failed += 1
            continue
        print(json.dumps(r) if args.json else report(r), flush=True)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
