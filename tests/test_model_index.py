"""model-index.yml imports every metafile, and every entry points at a file.

mim (``mim search``) and mmpretrain's model hub read the index with the
``modelindex`` package; per-task checks of the metafiles' contents are in
tests/configs and tests/detection.
"""
import glob
import os.path as osp

import yaml
from modelindex.load_model_index import load

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def _yaml(path):
    with open(path) as f:
        return yaml.safe_load(f)


def _imports():
    return _yaml(osp.join(REPO, 'model-index.yml'))['Import']


def test_every_metafile_is_imported():
    metafiles = sorted(
        osp.relpath(p, REPO) for p in glob.glob(
            osp.join(REPO, 'configs', '**', 'metafile.yml'), recursive=True))
    assert 'configs/detection/metafile.yml' in metafiles
    assert sorted(_imports()) == metafiles


def test_every_path_in_every_metafile_exists():
    names = []
    for rel in _imports():
        meta = _yaml(osp.join(REPO, rel))
        for collection in meta.get('Collections', []):
            assert osp.isfile(osp.join(REPO, collection['README'])), rel
        collections = {c['Name'] for c in meta.get('Collections', [])}
        for model in meta['Models']:
            assert osp.isfile(osp.join(REPO, model['Config'])), (
                rel, model['Name'], model['Config'])
            assert model['In Collection'] in collections, model['Name']
            names.append(model['Name'])
    assert len(names) == len(set(names)), 'a model name is used twice'


def test_modelindex_reads_the_whole_index():
    index = load(osp.join(REPO, 'model-index.yml'))
    index.build_models_with_collections()
    expected = [m['Name'] for rel in _imports()
                for m in _yaml(osp.join(REPO, rel))['Models']]
    assert sorted(m.name for m in index.models) == sorted(expected)
    for model in index.models:
        assert not model.check_errors, (model.name, model.check_errors)
        assert osp.isfile(osp.join(REPO, model.config)), model.name
