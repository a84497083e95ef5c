"""mmpretrain's get_model / list_models / inference_model find our classifiers.

``import res2net_mm`` registers every model of configs/res2net/metafile.yml with
mmpretrain's ModelHub; the detection metafile, also in model-index.yml, stays out.
"""
import glob
import os
import os.path as osp
import shutil

import pytest
import torch
import yaml
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmpretrain import get_model, list_models
from mmpretrain.apis import ModelHub
from mmpretrain.registry import MODELS

import res2net_mm
from res2net_mm import hub
from tests.tools.toolhelp import REPO

from .utils import NAMED_MODEL, run_python

CLS_METAFILE = osp.join(REPO, 'configs', 'res2net', 'metafile.yml')
DET_METAFILE = osp.join(REPO, 'configs', 'detection', 'metafile.yml')


def _models(path):
    with open(path) as f:
        return yaml.safe_load(f)['Models']


def _mmpretrain_names():
    """The names of mmpretrain's own model index, read from its wheel."""
    import mmpretrain
    from modelindex.load_model_index import load
    root = osp.join(osp.dirname(mmpretrain.__file__), '.mim')
    index = load(osp.join(root, 'model-index.yml'))
    index.build_models_with_collections()
    return {m.name.lower() for m in index.models}


def _num_params(model):
    return sum(p.numel() for p in model.parameters())


def test_every_classifier_is_found_by_name():
    ours = _models(CLS_METAFILE)
    assert len(ours) == len(glob.glob(osp.join(REPO, 'configs', 'res2net',
                                               '*.py')))
    # every one with its task: inference_model picks the Inferencer by it
    assert {m['Name'] for m in ours} <= set(
        list_models(task='Image Classification'))
    assert {m['Name'] for m in ours if 'res2net' in m['Name']} <= set(
        list_models('*res2net*'))
    for model in ours:
        name = model['Name']
        config = ModelHub.get(name).config
        assert config.filename == osp.join(REPO, model['Config']), name
        # Parameters only: building on the meta device skips the weights.
        with torch.device('meta'):
            by_name = get_model(name)
            with DefaultScope.overwrite_default_scope('mmpretrain'):
                direct = MODELS.build(Config.fromfile(
                    osp.join(REPO, model['Config'])).model)
        assert type(by_name.backbone).__module__.startswith('res2net_mm.')
        assert _num_params(by_name) == _num_params(direct) == \
            model['Metadata']['Parameters'], name


def test_names_do_not_shadow_mmpretrains():
    ours = {m['Name'] for m in _models(CLS_METAFILE)}
    # lowercase: ModelHub stores lowercase names but checks clashes with the
    # name as written, so only lowercase names are protected
    assert all(name == name.lower() for name in ours)
    theirs = _mmpretrain_names()
    assert not ours & theirs
    mine = list_models('res2net50-w14-s8')
    assert mine == ['res2net50-w14-s8_3rdparty_8xb32_in1k',
                    'res2net50-w14-s8_8xb32_in1k']
    # mmpretrain's own Res2Net weights still mean its own config and class
    metainfo = ModelHub.get('res2net50-w14-s8_3rdparty_8xb32_in1k')
    assert '.mim' in metainfo.config.filename
    assert metainfo.config.model.backbone.type == 'Res2Net'
    assert metainfo.weights.startswith('https://download.openmmlab.com')


def test_detection_models_stay_out_of_mmpretrains_hub():
    assert hub.classification_metafiles(REPO) == [CLS_METAFILE]
    names = set(list_models())
    assert not {m['Name'] for m in _models(DET_METAFILE)} & names
    # mmpretrain's own models still build
    assert _num_params(get_model('resnet18_8xb32_in1k')) == 11689512


def test_registration_is_idempotent():
    before = list_models()
    assert res2net_mm.register_mmpretrain_models() == [CLS_METAFILE]
    assert list_models() == before


def test_a_metafile_mixing_tasks_is_refused(tmp_path):
    models = [
        dict(Name='a', Config='a.py', Results=[dict(
            Task='Image Classification', Dataset='x', Metrics={})]),
        dict(Name='b', Config='b.py', Results=[dict(
            Task='Object Detection', Dataset='x', Metrics={})]),
    ]
    (tmp_path / 'meta.yml').write_text(yaml.safe_dump(dict(Models=models)))
    (tmp_path / 'model-index.yml').write_text('Import:\n  - meta.yml\n')
    with pytest.raises(ValueError, match="mixes 'Image Classification' "
                       r"with \['Object Detection'\]"):
        hub.classification_metafiles(str(tmp_path))


def test_model_index_location(tmp_path):
    package = tmp_path / 'site' / 'res2net_mm'
    (package / '.mim').mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match='reinstall res2net_mm'):
        hub.find_model_index(str(package))
    (package / '.mim' / 'model-index.yml').write_text('Import: []\n')
    assert hub.find_model_index(str(package)) == str(package / '.mim')
    # a source checkout wins over (possibly stale) copies in .mim
    (tmp_path / 'site' / 'model-index.yml').write_text('Import: []\n')
    (tmp_path / 'site' / 'configs').mkdir()
    assert hub.find_model_index(str(package)) == str(tmp_path / 'site')
    assert hub.find_model_index() == REPO


INSTALLED = '''
    import json, sys
    sys.path.insert(0, sys.argv[2])  # before the checkout (PYTHONPATH)
    import res2net_mm
    from mmpretrain import ModelHub, get_model
    metainfo = ModelHub.get(sys.argv[1])
    model = get_model(sys.argv[1])
    print(json.dumps(dict(
        package=res2net_mm.__file__, config=metainfo.config.filename,
        params=sum(p.numel() for p in model.parameters()))))
'''


def test_installed_layout_resolves_configs_under_mim(tmp_path):
    """A package laid out as the wheel installs it (res2net_mm/.mim with
    model-index.yml and configs/), imported away from the checkout."""
    site = tmp_path / 'site'
    shutil.copytree(osp.join(REPO, 'res2net_mm'), site / 'res2net_mm',
                    ignore=shutil.ignore_patterns('__pycache__', '.mim'))
    mim = site / 'res2net_mm' / '.mim'
    shutil.copytree(osp.join(REPO, 'configs'), mim / 'configs')
    shutil.copy(osp.join(REPO, 'model-index.yml'), mim)
    out = run_python(INSTALLED, NAMED_MODEL, site, cwd=str(tmp_path))
    assert out['package'] == str(site / 'res2net_mm' / '__init__.py')
    assert out['config'] == str(mim / 'configs' / 'res2net' /
                                f'{NAMED_MODEL}.py')
    assert out['params'] == next(m for m in _models(CLS_METAFILE) if m[
        'Name'] == NAMED_MODEL)['Metadata']['Parameters']


WITHOUT_MMPRETRAIN = '''
    import json, sys
    sys.modules['mmpretrain'] = None  # as if it were not installed
    import torch
    import res2net_mm
    from res2net_mm import Res2Net
    backbone = Res2Net(depth=26, base_width=8, stem_channels=16,
                       base_channels=16).eval()
    feats = backbone(torch.rand(1, 3, 64, 64))
    try:
        res2net_mm.register_mmpretrain_models()
    except ImportError as e:
        error = str(e)
    print(json.dumps(dict(has=res2net_mm.hub.HAS_MMPRETRAIN, error=error,
                          outputs=len(feats))))
'''


def test_import_without_mmpretrain():
    out = run_python(WITHOUT_MMPRETRAIN)
    assert out['has'] is False and out['outputs'] >= 1
    assert 'needs mmpretrain: pip install' in out['error']


INFERENCE_BY_NAME = '''
    import json, sys
    import res2net_mm  # noqa: F401 (registers the names)
    from mmpretrain import inference_model
    result = inference_model(sys.argv[1], sys.argv[2], pretrained=sys.argv[3],
                             device='cpu')
    print(json.dumps(dict(label=int(result['pred_label']),
                          scores=len(result['pred_scores']))))
'''


def test_inference_model_by_name(named_checkpoint, digit_image):
    """inference_model(name, image) with a checkpoint of our tools."""
    out = run_python(INFERENCE_BY_NAME, NAMED_MODEL, digit_image,
                     named_checkpoint)
    assert 0 <= out['label'] < 1000 and out['scores'] == 1000
    assert os.path.getsize(named_checkpoint) > 100e6  # the full-size model


IMPORT_ORDER = '''
    import json, sys
    if sys.argv[1] == 'res2net_mm first':
        import res2net_mm
        # the hub is registered lazily: no toolbox module imported yet
        early = sorted(m for m in sys.modules if m.startswith('mmpretrain'))
        from mmpretrain import list_models
    else:
        from mmpretrain import list_models
        early = []
        import res2net_mm
    print(json.dumps(dict(early=early, found=list_models('res2net50_8xb32_in1k'))))
'''


@pytest.mark.parametrize('order', ['res2net_mm first', 'mmpretrain first'])
def test_names_are_found_whatever_the_import_order(order):
    out = run_python(IMPORT_ORDER, order)
    assert out['early'] == []
    assert out['found'] == [NAMED_MODEL]
