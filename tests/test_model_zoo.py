"""The model zoo is honest: every accuracy in a metafile or a configs README
belongs to published weights, named by ``res2net_mm://`` and copied from the
published-weights table (res2net_mm/converters/published.py); nothing claims
to have been trained with this project's configs.

Every model of every metafile model-index.yml imports either has
``Converted From`` (``Name``: a ``res2net_mm://`` name of the table whose
architecture is the config's; ``Weights``: the publisher's URL as the table
has it; Results: the table's figures) or claims no metrics at all. Every model
says ``Trained With This Config: none yet``.
"""
import os.path as osp
import re

import pytest
import yaml
from mmengine.config import Config

from res2net_mm.converters.published import (IN1K, SCHEME, WEIGHTS,
                                             get_weights)

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
NOT_TRAINED = 'none yet'


def _yaml(path):
    with open(path) as f:
        return yaml.safe_load(f)


def _models():
    index = _yaml(osp.join(REPO, 'model-index.yml'))
    return [(rel, m) for rel in index['Import']
            for m in _yaml(osp.join(REPO, rel))['Models']]


MODELS = _models()


def _id(item):
    return item[1]['Name']


def expected_results(w):
    """The Results a metafile model with weights ``w`` must carry."""
    if w.task == IN1K:
        return [dict(Task='Image Classification', Dataset='ImageNet-1k',
                     Metrics={'Top 1 Accuracy': w.top1,
                              'Top 5 Accuracy': w.top5})]
    results = [dict(Task='Object Detection', Dataset='COCO',
                    Metrics={'box AP': w.box_ap})]
    if w.mask_ap is not None:
        results.append(dict(Task='Instance Segmentation', Dataset='COCO',
                            Metrics={'mask AP': w.mask_ap}))
    return results


def _sorted(results):
    return sorted(results, key=lambda r: r['Task'])


@pytest.mark.parametrize('item', MODELS, ids=_id)
def test_converted_weights_or_no_claim(item):
    rel, model = item
    assert model['Trained With This Config'] == NOT_TRAINED, model['Name']
    # mmpretrain's get_model(pretrained=True) and `mim download` would read
    # a top-level Weights as a file in the config's own key layout
    assert 'Weights' not in model, model['Name']
    results = model.get('Results') or []
    converted = model.get('Converted From')
    if converted is None:
        assert all(r['Metrics'] == {} for r in results), model['Name']
        return
    assert set(converted) == {'Name', 'Weights', 'Code'}, model['Name']
    assert converted['Name'].startswith(SCHEME)
    w = get_weights(converted['Name'])  # KeyError: not in the table
    assert converted['Weights'] == w.url
    assert converted['Code'].startswith('https://github.com/')
    cfg = Config.fromfile(osp.join(REPO, model['Config']))
    assert cfg.model.backbone.arch == w.arch, model['Name']
    assert _sorted(results) == _sorted(expected_results(w)), model['Name']


def test_each_published_file_of_a_configs_architecture_is_listed():
    """Official files with the standard recipe of their architecture, MindCV's
    with the seed recipe that reproduces their training, mmdet's detectors
    with their mmdet-compatible config."""
    listed = {m['Converted From']['Name'][len(SCHEME):]: m
              for _, m in MODELS if 'Converted From' in m}
    archs = {}
    for _, m in MODELS:
        if m['Config'].startswith('configs/res2net/'):
            arch = Config.fromfile(osp.join(REPO, m['Config'])).model \
                .backbone.arch
            recipe = 'mindcv' if '-mindcv-' in m['Config'] else 'official'
            archs[(recipe, arch)] = m['Name']
    wanted = set()
    for w in WEIGHTS.values():
        if w.source == 'mmdet' and w.task != IN1K:
            wanted.add(w.name)
            assert listed[w.name]['Config'] == (
                f'configs/detection/mmdet-compatible/'
                f'{w.name[len("mmdet/"):]}.py')
        # the seed recipes are MindCV 0.3.0's Ascend 910 trainings; the
        # later Atlas 800T A2 retrain (910v2) is not listed with them
        elif w.source in ('official', 'mindcv') and \
                (w.source, w.arch) in archs and w.model == w.arch and \
                not w.name.endswith('_910v2'):
            wanted.add(w.name)
            assert listed[w.name]['Name'] == archs[(w.source, w.arch)]
    assert set(listed) == wanted


def test_configs_readmes_show_the_tables_figures():
    """Each README row of a config with converted weights names them and
    shows the table's figures; a row of a config without any shows none."""
    readmes = {}
    for rel, model in MODELS:
        folder = osp.dirname(rel)  # the metafile's README is next to it
        if folder not in readmes:
            with open(osp.join(REPO, folder, 'README.md')) as f:
                readmes[folder] = f.read()
        link = osp.relpath(model['Config'], folder)
        rows = [line for line in readmes[folder].splitlines()
                if line.startswith('|') and (
                    f'({link})' in line or f'(./{link})' in line)]
        assert rows, (model['Name'], link)
        converted = model.get('Converted From')
        for row in rows:
            cells = [c.strip() for c in row.strip('|').split('|')]
            figures = [c for c in cells if re.fullmatch(r'\d+\.\d+', c)]
            if converted is None:
                assert '`res2net_mm://' not in row, model['Name']
                continue
            w = get_weights(converted['Name'])
            assert f'`{converted["Name"]}`' in row, model['Name']
            if w.task == IN1K:
                want = [f'{w.top1:.2f}', f'{w.top5:.2f}']
            else:
                want = [f'{w.box_ap:.1f}'] + (
                    [] if w.mask_ap is None else [f'{w.mask_ap:.1f}'])
            assert [f for f in figures if f in want] == want, (
                model['Name'], row)


@pytest.mark.parametrize(
    'path', sorted(m['Config'] for _, m in MODELS
                   if 'mmdet-compatible' in m['Config']))
def test_mmdet_compatible_configs_name_their_checkpoint(path):
    with open(osp.join(REPO, path)) as f:
        text = f.read()
    name = f'{SCHEME}mmdet/{osp.basename(path)[:-3]}'
    assert name in text
    get_weights(name)
    # load_from would make tools/train.py fine-tune the trained detector
    assert Config.fromfile(osp.join(REPO, path)).get('load_from') is None
