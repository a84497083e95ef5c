"""The published-weights table is consistent and agrees with what the
installed publishers' packages ship (metafiles, model configs, hub lists)."""
import collections
import re
from pathlib import Path

import pytest
import yaml

from res2net_mm.converters.detect import FORMATS
from res2net_mm.converters.published import (CONTAINERS, SHA256_KINDS,
                                             SOURCES, WEIGHTS, get_weights,
                                             weights_markdown)
from res2net_mm.models.variants import VARIANTS


def test_every_entry_is_well_formed():
    names = [w.name for w in WEIGHTS.values()]
    assert len(names) == len(set(names)) == len(WEIGHTS)
    files = [w.file_name for w in WEIGHTS.values()]
    assert len(files) == len(set(files)), 'cache / mirror names collide'
    for w in WEIGHTS.values():
        assert w.arch in VARIANTS, w.name
        assert w.source in SOURCES and w.name.startswith(w.source + '/')
        assert w.url.startswith('https://'), w.name
        assert w.container in CONTAINERS and w.naming in FORMATS, w.name
        assert w.sha256_kind in SHA256_KINDS, w.name
        if w.sha256_kind == 'unpublished':
            assert w.sha256 is None, w.name
        else:
            assert re.fullmatch(r'[0-9a-f]+', w.sha256), w.name
            if w.sha256_kind == 'full':
                assert len(w.sha256) == 64, w.name
            else:
                assert 8 <= len(w.sha256) < 64, w.name
        if w.sha256_kind == 'prefix':  # the prefix is the one in the name
            assert f'-{w.sha256}' in w.file_name, w.name
        assert w.cited and w.accuracy_from, w.name
        assert (w.top1 is None) == (w.top5 is None), w.name
        if w.task.startswith('COCO'):
            assert w.box_ap is not None and w.top1 is None, w.name
        ext = {'torch': '.pth', 'safetensors': '.safetensors',
               'mindspore_ckpt': '.ckpt'}[w.container]
        assert w.file_name.endswith(ext), w.name


def test_counts_by_source():
    counts = collections.Counter(w.source for w in WEIGHTS.values())
    assert counts == dict(official=11, mmpretrain=3, mmdet=6, mindcv=5,
                          timm=11)


def test_timm_and_mindcv_entries_name_the_variants_twins():
    """The variant table says which timm / MindCV model each variant is."""
    from res2net_mm.models.dla import TIMM_NAMES
    for w in WEIGHTS.values():
        if w.source == 'timm':
            twin = VARIANTS[w.arch].timm or TIMM_NAMES[w.arch]
            assert w.model == f'{twin}.in1k', w.name
        if w.source == 'mindcv':
            assert VARIANTS[w.arch].mindcv == w.model, w.name
        if w.source == 'official':
            assert w.model == w.arch, w.name


def test_lookup():
    assert get_weights('res2net_mm://mindcv/res2net50') is \
        WEIGHTS['mindcv/res2net50']
    with pytest.raises(KeyError, match='Did you mean mindcv/res2net101'):
        get_weights('mindcv/res2net10')


def mim_file(package, path):
    import importlib
    root = Path(importlib.import_module(package).__file__).parent / '.mim'
    return root / path


def test_mmpretrain_metafile():
    meta = yaml.safe_load(mim_file(
        'mmpretrain', 'configs/res2net/metafile.yml').read_text())
    ours = {w.model: w for w in WEIGHTS.values() if w.source == 'mmpretrain'}
    assert sorted(ours) == sorted(m['Name'] for m in meta['Models'])
    for m in meta['Models']:
        w = ours[m['Name']]
        metrics = m['Results'][0]['Metrics']
        assert w.url == m['Weights']
        assert (w.top1, w.top5) == (metrics['Top 1 Accuracy'],
                                    metrics['Top 5 Accuracy'])


def test_mmdet_metafile_and_openmmlab_name():
    meta = yaml.safe_load(mim_file(
        'mmdet', 'configs/res2net/metafile.yml').read_text())
    ours = {w.model: w for w in WEIGHTS.values()
            if w.source == 'mmdet' and w.task.startswith('COCO')}
    assert sorted(ours) == sorted(m['Name'] for m in meta['Models'])
    for m in meta['Models']:
        w = ours[m['Name']]
        assert w.url == m['Weights']
        ap = {k: v for r in m['Results'] for k, v in r['Metrics'].items()}
        assert w.box_ap == ap['box AP'] and w.mask_ap == ap.get('mask AP')
        assert w.task == ('COCO detection + instance segmentation'
                          if 'mask AP' in ap else 'COCO detection')
    from mmengine.runner.checkpoint import get_external_models
    w = WEIGHTS['mmdet/res2net101_v1d_26w_4s']
    assert w.model == 'open-mmlab://res2net101_v1d_26w_4s'
    assert get_external_models()['res2net101_v1d_26w_4s'] == w.url


def test_mindcv_model_urls():
    from mindcv.models.res2net import default_cfgs
    for w in WEIGHTS.values():
        if w.source == 'mindcv' and w.name != 'mindcv/res2net50_910v2':
            assert default_cfgs[w.model]['url'] == w.url, w.name
    published = {cfg['url'] for cfg in default_cfgs.values() if cfg['url']}
    assert published <= {w.url for w in WEIGHTS.values()}


def test_timm_hub_ids():
    from timm.models import get_pretrained_cfg
    from timm.models._hub import HF_SAFE_WEIGHTS_NAME
    for w in WEIGHTS.values():
        if w.source == 'timm':
            cfg = get_pretrained_cfg(w.model)
            assert cfg.hf_hub_id == f'timm/{w.model}', w.name
            assert w.url == (f'https://huggingface.co/{cfg.hf_hub_id}/'
                             f'resolve/main/{HF_SAFE_WEIGHTS_NAME}')


def test_markdown_has_one_row_per_entry():
    rows = weights_markdown().splitlines()[2:]
    assert len(rows) == len(WEIGHTS)
    for w, row in zip(WEIGHTS.values(), rows):
        assert row.startswith(f'| `{w.name}` | `{w.arch}` |')
