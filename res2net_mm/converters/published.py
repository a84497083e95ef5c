"""Published Res2Net weight files, declared as data.

One entry per file a publisher hosts: where it is, what it is (the variant of
:data:`res2net_mm.models.variants.VARIANTS` its backbone has, its container and
key naming), the hash to check it against and the accuracy the publisher
reports for it, each with the file it was read from. ``res2net_mm://NAME`` (see
:mod:`.download`) fetches an entry once into the cache, verified.

Nothing below is measured here: every URL, hash and figure is copied from the
publisher's own code, metafile or README named in ``cited``. A hash is the full
sha256 only where the publisher gives one (none of them does); otherwise it is
the sha256 prefix the file name carries by the publisher's naming rule
(``sha256_kind='prefix'``), or None (``'unpublished'``: timm's hub files are
named ``model.safetensors``, with no hash in timm's repository).
"""
import difflib
from dataclasses import dataclass
from typing import Dict, Optional
from urllib.parse import urlparse

SHA256_KINDS = ('full', 'prefix', 'unpublished')
SOURCES = {
    'official': 'official Res2Net-PretrainedModels (Gao et al.)',
    'mmpretrain': 'mmpretrain (converted from the official files)',
    'mmdet': 'mmdetection',
    'mindcv': 'MindCV (MindSpore)',
    'timm': 'timm (Hugging Face hub)',
}
# Container names as :func:`res2net_mm.converters.reading.sniff_container`
# reports them.
CONTAINERS = ('torch', 'safetensors', 'mindspore_ckpt')

# Where the facts come from (repository + file).
OFFICIAL_README = 'Res2Net/Res2Net-PretrainedModels README.md'
OFFICIAL_V1 = 'Res2Net/Res2Net-PretrainedModels res2net.py model_urls'
OFFICIAL_V1B = 'Res2Net/Res2Net-PretrainedModels res2net_v1b.py model_urls'
OFFICIAL_NEXT = 'Res2Net/Res2Net-PretrainedModels res2next.py model_urls'
OFFICIAL_DLA = 'Res2Net/Res2Net-PretrainedModels dla.py model_urls'
# The official code loads them with torch's model_zoo.load_url, whose naming
# convention is ``name-<sha256 prefix>.pth``; the repository states no hash.
TORCH_HUB_RULE = ('; hash: the -<hex> suffix, torch hub\'s file-name rule '
                  '(sha256 prefix)')
MMPRETRAIN_META = ('open-mmlab/mmpretrain configs/res2net/metafile.yml '
                   '(v1.2.0)')
OPENMMLAB_RULE = ('; hash: the -<hex> suffix, OpenMMLab\'s publish_model.py '
                  'rule (first 8 hex digits of the sha256)')
MMDET_META = ('open-mmlab/mmdetection configs/res2net/metafile.yml '
              '(v3.3.0)')
MMENGINE_HUB = 'open-mmlab/mmengine mmengine/hub/openmmlab.json'
MINDCV_README = 'mindspore-lab/mindcv configs/res2net/README.md (v0.3.0)'
MINDCV_README_NOW = ('mindspore-lab/mindcv configs/res2net/README.md (main, '
                     'Ascend Atlas 800T A2 table)')
MINDCV_RULE = ('; hash: mindspore-lab/mindcv configs/README.md naming rule '
               '{model}-{first 8 hex digits of sha256sum}.ckpt')
TIMM_CFGS = ('huggingface/pytorch-image-models timm/models/res2net.py '
             "default_cfgs (hf_hub_id='timm/'); file name: timm/models/"
             '_hub.py HF_SAFE_WEIGHTS_NAME')
TIMM_DLA_CFGS = TIMM_CFGS.replace('res2net.py', 'dla.py')
TIMM_RESULTS = ('huggingface/pytorch-image-models '
                'results/results-imagenet.csv')
OFFICIAL_OSS = 'https://shanghuagao.oss-cn-beijing.aliyuncs.com/res2net/'
MMPRETRAIN_URL = ('https://download.openmmlab.com/mmclassification/v0/'
                  'res2net/')
MMDET_URL = 'https://download.openmmlab.com/mmdetection/v2.0/res2net/'
MINDCV_URL = 'https://download.mindspore.cn/toolkits/mindcv/res2net/'
MMDET_POOL = ('mmdet skips the stage pool at stride 1: build the backbone '
              "with stage_pool='strided' to reproduce mmdet's outputs")


@dataclass(frozen=True)
class PublishedWeights:
    """One published weight file.

    Args:
        name (str): ``res2net_mm://NAME``: ``<source>/<the publisher's own
            model name>``.
        arch (str): Variant of the backbone (a key of ``VARIANTS``).
        source (str): Publisher, a key of :data:`SOURCES`.
        url (str): Where the publisher hosts the file.
        container (str): ``'torch'``, ``'safetensors'`` or
            ``'mindspore_ckpt'`` (checked after the download).
        naming (str): Key naming of the file (``official``, ``timm``,
            ``mmpretrain``, ``mmdet``, ``mindcv``); converted on load.
        sha256 (str, optional): The full sha256, or its prefix, hex.
        sha256_kind (str): ``'full'``, ``'prefix'`` or ``'unpublished'``.
        task (str): ``'ImageNet-1k classification'`` or the COCO task.
        model (str): The publisher's name of the model (config, model id).
        top1 (float, optional): Reported ImageNet-1k top-1 (%).
        top5 (float, optional): Reported top-5 (%).
        box_ap (float, optional): Reported COCO box AP.
        mask_ap (float, optional): Reported COCO mask AP.
        accuracy_from (str): Where the reported figures come from.
        cited (str): Where the URL (and hash) come from.
        filename (str, optional): Name in the cache and in mirrors; defaults
            to the last part of ``url``.
        note (str): Anything a user must know to use the file.
    """
    name: str
    arch: str
    source: str
    url: str
    container: str
    naming: str
    sha256: Optional[str]
    sha256_kind: str
    task: str
    model: str
    top1: Optional[float] = None
    top5: Optional[float] = None
    box_ap: Optional[float] = None
    mask_ap: Optional[float] = None
    accuracy_from: str = ''
    cited: str = ''
    filename: Optional[str] = None
    note: str = ''

    @property
    def file_name(self) -> str:
        """The name of the file in the cache and in a mirror."""
        return self.filename or urlparse(self.url).path.rsplit('/', 1)[-1]

    @property
    def file_format(self) -> str:
        """``'<naming> <container>'``, e.g. ``'mindcv mindspore_ckpt'``."""
        return f'{self.naming} {self.container}'


IN1K = 'ImageNet-1k classification'
DET = 'COCO detection'
SEG = 'COCO detection + instance segmentation'


def _official(name, arch, file, cited, top1_err, top5_err, **kw):
    """An official file; the README reports top-1 / top-5 *errors*."""
    return PublishedWeights(
        f'official/{name}', arch, 'official', OFFICIAL_OSS + file, 'torch',
        'official', file.rsplit('-', 1)[1].split('.')[0], 'prefix', IN1K,
        name, top1=round(100 - top1_err, 2), top5=round(100 - top5_err, 2),
        accuracy_from=f'{OFFICIAL_README} (top-1 error {top1_err:.2f}, top-5 '
        f'error {top5_err:.2f})', cited=cited + TORCH_HUB_RULE, **kw)


def _mmpretrain(model, arch, file, top1, top5):
    return PublishedWeights(
        f'mmpretrain/{model}', arch, 'mmpretrain', MMPRETRAIN_URL + file,
        'torch', 'mmpretrain', file.rsplit('-', 1)[1].split('.')[0], 'prefix',
        IN1K, model, top1=top1, top5=top5, accuracy_from=MMPRETRAIN_META,
        cited=MMPRETRAIN_META + OPENMMLAB_RULE,
        note='converted by mmpretrain from the official file')


def _mmdet(model, folder, file, box_ap, mask_ap=None):
    return PublishedWeights(
        f'mmdet/{model}', 'res2net101_v1b_26w_4s', 'mmdet',
        f'{MMDET_URL}{folder}/{file}', 'torch', 'mmdet',
        file.rsplit('-', 1)[1].split('.')[0], 'prefix',
        DET if mask_ap is None else SEG, model, box_ap=box_ap,
        mask_ap=mask_ap, accuracy_from=MMDET_META,
        cited=MMDET_META + OPENMMLAB_RULE,
        note='whole detector (R2-101-FPN, v1d); ' + MMDET_POOL)


def _mindcv(model, arch, file, top1, top5, readme=MINDCV_README, note=''):
    return PublishedWeights(
        f'mindcv/{model}', arch, 'mindcv', MINDCV_URL + file,
        'mindspore_ckpt', 'mindcv', file.split('-')[1].split('.')[0],
        'prefix', IN1K, model.split('_910')[0], top1=top1, top5=top5,
        accuracy_from=readme, cited=readme + MINDCV_RULE,
        note=note or 'trained by MindCV (8 x Ascend 910, D910x8-G)')


def _timm(model_id, arch, top1, top5, cfgs=TIMM_CFGS):
    return PublishedWeights(
        f'timm/{model_id}', arch, 'timm',
        f'https://huggingface.co/timm/{model_id}/resolve/main/'
        'model.safetensors', 'safetensors', 'timm', None, 'unpublished',
        IN1K, model_id, top1=top1, top5=top5, accuracy_from=TIMM_RESULTS,
        cited=cfgs, filename=f'timm-{model_id}.safetensors',
        note='no hash in timm\'s repository: the download is checked for '
        'completeness and container only')


_WEIGHTS = (
    _official('res2net50_26w_4s', 'res2net50_26w_4s',
              'res2net50_26w_4s-06e79181.pth', OFFICIAL_V1, 22.01, 6.15),
    _official('res2net50_48w_2s', 'res2net50_48w_2s',
              'res2net50_48w_2s-afed724a.pth', OFFICIAL_V1, 22.68, 6.47),
    _official('res2net50_14w_8s', 'res2net50_14w_8s',
              'res2net50_14w_8s-6527dddc.pth', OFFICIAL_V1, 21.86, 6.14),
    _official('res2net50_26w_6s', 'res2net50_26w_6s',
              'res2net50_26w_6s-19041792.pth', OFFICIAL_V1, 21.42, 5.87),
    _official('res2net50_26w_8s', 'res2net50_26w_8s',
              'res2net50_26w_8s-2c7c9f12.pth', OFFICIAL_V1, 20.80, 5.63),
    _official('res2net101_26w_4s', 'res2net101_26w_4s',
              'res2net101_26w_4s-02a759a1.pth', OFFICIAL_V1, 20.81, 5.57),
    _official('res2net50_v1b_26w_4s', 'res2net50_v1b_26w_4s',
              'res2net50_v1b_26w_4s-3cf99910.pth', OFFICIAL_V1B, 19.73, 4.96),
    _official('res2net101_v1b_26w_4s', 'res2net101_v1b_26w_4s',
              'res2net101_v1b_26w_4s-0812c246.pth', OFFICIAL_V1B, 18.77,
              4.64),
    _official('res2next50', 'res2next50', 'res2next50_4s-6ef7e7bf.pth',
              OFFICIAL_NEXT, 21.76, 6.09),
    _official('res2net_dla60', 'res2net_dla60',
              'res2net_dla60_4s-d88db7f9.pth', OFFICIAL_DLA, 21.53, 5.80,
              note='DLA tree layout: loads into Res2NetDLA'),
    _official('res2next_dla60', 'res2next_dla60',
              'res2next_dla60_4s-d327927b.pth', OFFICIAL_DLA, 21.55, 5.86,
              note='DLA tree layout: loads into Res2NetDLA'),
    _mmpretrain('res2net50-w14-s8_3rdparty_8xb32_in1k', 'res2net50_14w_8s',
                'res2net50-w14-s8_3rdparty_8xb32_in1k_20210927-bc967bf1.pth',
                78.14, 93.85),
    _mmpretrain('res2net50-w26-s8_3rdparty_8xb32_in1k', 'res2net50_26w_8s',
                'res2net50-w26-s8_3rdparty_8xb32_in1k_20210927-f547a94b.pth',
                79.20, 94.36),
    _mmpretrain('res2net101-w26-s4_3rdparty_8xb32_in1k', 'res2net101_26w_4s',
                'res2net101-w26-s4_3rdparty_8xb32_in1k_20210927-870b6c36.pth',
                79.19, 94.44),
    PublishedWeights(
        'mmdet/res2net101_v1d_26w_4s', 'res2net101_v1b_26w_4s', 'mmdet',
        'https://download.openmmlab.com/pretrain/third_party/'
        'res2net101_v1d_26w_4s_mmdetv2-f0a600f9.pth', 'torch', 'mmdet',
        'f0a600f9', 'prefix', IN1K, 'open-mmlab://res2net101_v1d_26w_4s',
        accuracy_from='no accuracy published for this file',
        cited=MMENGINE_HUB + OPENMMLAB_RULE,
        note="the ImageNet backbone mmdet's R2-101 configs start from "
        '(mmdet pretrain naming); ' + MMDET_POOL),
    _mmdet('faster-rcnn_res2net-101_fpn_2x_coco',
           'faster_rcnn_r2_101_fpn_2x_coco',
           'faster_rcnn_r2_101_fpn_2x_coco-175f1da6.pth', 43.0),
    _mmdet('mask-rcnn_res2net-101_fpn_2x_coco', 'mask_rcnn_r2_101_fpn_2x_coco',
           'mask_rcnn_r2_101_fpn_2x_coco-17f061e8.pth', 43.6, 38.7),
    _mmdet('cascade-rcnn_res2net-101_fpn_20e_coco',
           'cascade_rcnn_r2_101_fpn_20e_coco',
           'cascade_rcnn_r2_101_fpn_20e_coco-f4b7b7db.pth', 45.7),
    _mmdet('cascade-mask-rcnn_res2net-101_fpn_20e_coco',
           'cascade_mask_rcnn_r2_101_fpn_20e_coco',
           'cascade_mask_rcnn_r2_101_fpn_20e_coco-8a7b41e1.pth', 46.4, 40.0),
    _mmdet('htc_res2net-101_fpn_20e_coco', 'htc_r2_101_fpn_20e_coco',
           'htc_r2_101_fpn_20e_coco-3a8d2112.pth', 47.5, 41.6),
    _mindcv('res2net50', 'res2net50', 'res2net50-f42cf71b.ckpt', 79.35,
            94.64),
    _mindcv('res2net101', 'res2net101', 'res2net101-8ae60132.ckpt', 79.56,
            94.70),
    _mindcv('res2net50_v1b', 'res2net50_v1b', 'res2net50_v1b-99304e92.ckpt',
            80.32, 95.09),
    _mindcv('res2net101_v1b', 'res2net101_v1b', 'res2net101_v1b-7e6db001.ckpt',
            81.14, 95.41),
    _mindcv('res2net50_910v2', 'res2net50', 'res2net50-aa758355-910v2.ckpt',
            79.33, 94.64, readme=MINDCV_README_NOW,
            note='retrained by MindCV on Ascend Atlas 800T A2 (MindSpore '
            '2.5)'),
    _timm('res2net50_26w_4s.in1k', 'res2net50_26w_4s', 77.994, 93.860),
    _timm('res2net50_48w_2s.in1k', 'res2net50_48w_2s', 77.528, 93.562),
    _timm('res2net50_14w_8s.in1k', 'res2net50_14w_8s', 78.142, 93.852),
    _timm('res2net50_26w_6s.in1k', 'res2net50_26w_6s', 78.586, 94.120),
    _timm('res2net50_26w_8s.in1k', 'res2net50_26w_8s', 78.950, 94.280),
    _timm('res2net101_26w_4s.in1k', 'res2net101_26w_4s', 79.192, 94.466),
    _timm('res2next50.in1k', 'res2next50', 78.238, 93.904),
    _timm('res2net50d.in1k', 'res2net50_v1b_26w_4s', 80.280, 95.028),
    _timm('res2net101d.in1k', 'res2net101_v1b_26w_4s', 81.236, 95.346),
    _timm('dla60_res2net.in1k', 'res2net_dla60', 78.480, 94.204,
          cfgs=TIMM_DLA_CFGS),
    _timm('dla60_res2next.in1k', 'res2next_dla60', 78.488, 94.144,
          cfgs=TIMM_DLA_CFGS),
)

WEIGHTS: Dict[str, PublishedWeights] = {w.name: w for w in _WEIGHTS}
SCHEME = 'res2net_mm://'


def get_weights(name: str) -> PublishedWeights:
    """Look a published file up by name (with or without ``res2net_mm://``).

    Raises:
        KeyError: For an unknown name, listing close and all valid names.
    """
    key = name[len(SCHEME):] if name.startswith(SCHEME) else name
    try:
        return WEIGHTS[key]
    except KeyError:
        close = difflib.get_close_matches(key, list(WEIGHTS), n=3)
        hint = f' Did you mean {", ".join(close)}?' if close else ''
        raise KeyError(
            f'unknown published weights {key!r}.{hint} List them with '
            f'`python tools/model_converters/download.py --list`; valid: '
            f'{", ".join(WEIGHTS)}') from None


def accuracy_text(w: PublishedWeights, value: Optional[float]) -> str:
    """A top-1 / top-5 figure of ``w`` with as many decimals as its
    publisher gives (timm's results table: 3, the others: 2)."""
    digits = 3 if w.source == 'timm' else 2
    return '-' if value is None else f'{value:.{digits}f}'


def reported(w: PublishedWeights) -> str:
    """The publisher's figures, e.g. ``top-1 77.99 / top-5 93.85``."""
    if w.box_ap is not None:
        mask = f' / mask AP {w.mask_ap:.1f}' if w.mask_ap is not None else ''
        return f'box AP {w.box_ap:.1f}{mask}'
    if w.top1 is None:
        return '-'
    return (f'top-1 {accuracy_text(w, w.top1)} / '
            f'top-5 {accuracy_text(w, w.top5)}')


def weights_markdown() -> str:
    """The weights table of docs/weights.md (kept in sync by a test)."""
    rows = [
        '| `res2net_mm://` name | architecture | file | sha256 | reported '
        '| figures from |',
        '|---|---|---|---|---|---|',
    ]
    for w in WEIGHTS.values():
        digest = {'full': f'`{w.sha256}`', 'prefix': f'`{w.sha256}...`',
                  'unpublished': 'unpublished'}[w.sha256_kind]
        rows.append(f'| `{w.name}` | `{w.arch}` | [{w.file_format}]({w.url}) '
                    f'| {digest} | {reported(w)} | {w.accuracy_from} |')
    return '\n'.join(rows)


__all__ = ['PublishedWeights', 'WEIGHTS', 'SOURCES', 'SHA256_KINDS',
           'CONTAINERS', 'SCHEME', 'get_weights', 'weights_markdown',
           'reported']
