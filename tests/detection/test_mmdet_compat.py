"""mmdet's published Res2Net-101 detectors load into res2net_mm and agree exactly.

For each of the five detectors mmdet publishes, mmdet itself builds the detector
from its own config (its own ``Res2Net`` backbone) with random weights and random
BN statistics, and saves it the way its published checkpoints are saved
(mmengine ``save_checkpoint``, ``state_dict`` + ``meta``). The file is loaded into
the res2net_mm version of the config (strictly: every key used, none missing), and
backbone features, neck features and final predictions (boxes, scores, labels,
masks) must be bit-identical in eval mode with the per-split computation mmdet
uses (``fast_path=False`` on every block), and equal to float rounding with
res2net_mm's default grouped-conv fast path (one conv for a stage block's
splits: the same sums in another order).
"""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import save_checkpoint
from mmengine.runner.checkpoint import weights_to_cpu
from torch.nn.modules.batchnorm import _BatchNorm

from res2net_mm.models import Bottle2neck


from .utils import COMPAT_CONFIGS, config_id, mmdet_config_path


def _build(cfg):
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    cfg = cfg.model
    cfg.backbone.init_cfg = None  # no download; weights are set below
    # Keep every candidate box so that predictions are many and non-trivial.
    test_cfg = cfg.test_cfg
    rcnn = test_cfg.get('rcnn', test_cfg)
    rcnn['score_thr'] = 0.0
    rcnn['max_per_img'] = 50
    return MODELS.build(cfg).eval()


def _randomize(model, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, _BatchNorm):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=gen) * 0.5 + 0.5)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.1)
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            elif isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(
                    torch.randn(m.weight.shape, generator=gen) /
                    fan_in**0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=gen) *
                                 0.01)


def _load_mmdet_detector_checkpoint(model, path):
    """Load a whole mmdet detector checkpoint as ``load_from=`` does (mmengine's
    ``load_checkpoint``), strictly: the backbone renames mmdet's ``stem.N``
    keys itself."""
    from mmengine.runner import load_checkpoint
    load_checkpoint(model, str(path), map_location='cpu', strict=True)


def _batch(seed=1, size=128):
    from mmdet.structures import DetDataSample
    gen = torch.Generator().manual_seed(seed)
    img = torch.randint(0, 256, (3, size, size), generator=gen,
                        dtype=torch.uint8)
    sample = DetDataSample(
        metainfo=dict(img_shape=(size, size), ori_shape=(size, size),
                      scale_factor=(1.0, 1.0), img_id=0))
    return dict(inputs=[img], data_samples=[sample])


def _set_fast_path(model, enabled):
    blocks = [m for m in model.modules() if isinstance(m, Bottle2neck)]
    assert blocks
    for b in blocks:
        b.fast_path = enabled


def _outputs(model, x):
    with torch.no_grad():
        feats = model.backbone(x)
        neck = model.extract_feat(x)
        pred = model.test_step(_batch())[0].pred_instances
    return feats, neck, pred


@pytest.mark.parametrize('path', COMPAT_CONFIGS, ids=config_id)
def test_mmdet_detector_checkpoint_gives_same_outputs(path, tmp_path):
    ours_cfg = Config.fromfile(path)
    base = 'res2net/' + osp.basename(path)
    theirs_cfg = Config.fromfile(mmdet_config_path(base))
    assert theirs_cfg.model.backbone.type == 'Res2Net'  # mmdet's own class

    theirs = _build(theirs_cfg)
    assert type(theirs.backbone).__module__.startswith('mmdet.')
    _randomize(theirs)
    ckpt = str(tmp_path / 'mmdet_detector.pth')
    save_checkpoint(
        dict(state_dict=weights_to_cpu(theirs.state_dict()),
             meta=dict(mmdet_version='3.3.0')), ckpt)

    ours = _build(ours_cfg)
    assert type(ours.backbone).__module__.startswith('res2net_mm.')
    _load_mmdet_detector_checkpoint(ours, ckpt)

    data = _batch()
    with torch.no_grad():
        x = theirs.data_preprocessor(data, False)['inputs']
    feats_theirs, neck_theirs, pred_theirs = _outputs(theirs, x)
    assert len(pred_theirs) > 0, 'the comparison needs detections'

    # Bit for bit, as the config ships (fast_path=False): res2net_mm's
    # per-split path is mmdet's computation.
    assert not any(b.fast_path for b in ours.backbone.modules()
                   if hasattr(b, 'fast_path'))
    feats, neck, pred = _outputs(ours, x)
    assert len(feats) == len(feats_theirs) == 4
    for a, b in zip(feats + neck, feats_theirs + neck_theirs):
        assert torch.equal(a, b)
    assert set(pred.keys()) == set(pred_theirs.keys())
    for key in ('bboxes', 'scores', 'labels', 'masks'):
        if key in pred_theirs:
            assert torch.equal(pred[key], pred_theirs[key]), key

    # Default fast path: the same to float rounding.
    _set_fast_path(ours, True)
    feats, neck, pred = _outputs(ours, x)
    for a, b in zip(feats + neck, feats_theirs + neck_theirs):
        torch.testing.assert_close(a, b, rtol=1e-4,
                                   atol=1e-5 * float(b.abs().max()))
    torch.testing.assert_close(pred.bboxes, pred_theirs.bboxes, rtol=1e-4,
                               atol=1e-3)
    torch.testing.assert_close(pred.scores, pred_theirs.scores, rtol=1e-4,
                               atol=1e-5)
    assert torch.equal(pred.labels, pred_theirs.labels)

    # The mode matters: the official pooling (stage_pool='always') on the same
    # weights changes the features, so the test above cannot pass by accident.
    ours_cfg.model.backbone.stage_pool = 'always'
    official = _build(ours_cfg)
    _load_mmdet_detector_checkpoint(official, ckpt)
    _set_fast_path(official, False)
    with torch.no_grad():
        assert not torch.equal(official.backbone(x)[0], feats_theirs[0])
