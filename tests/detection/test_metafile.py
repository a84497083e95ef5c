"""configs/detection/metafile.yml lists every config, and its published
results are mmdet's own (read from the installed mmdet's metafile)."""
import os.path as osp

import yaml

from .utils import ALL_CONFIGS, COMPAT_CONFIGS, CONFIG_DIR, REPO, \
    mmdet_config_path


def _load(path):
    with open(path) as f:
        return yaml.safe_load(f)


def test_metafile_lists_every_config():
    meta = _load(osp.join(CONFIG_DIR, 'metafile.yml'))
    collections = {c['Name'] for c in meta['Collections']}
    listed = {}
    for model in meta['Models']:
        assert model['In Collection'] in collections, model['Name']
        assert osp.isfile(osp.join(REPO, model['Config'])), model['Config']
        listed[osp.join(REPO, model['Config'])] = model
    assert sorted(listed) == sorted(ALL_CONFIGS)


def test_published_results_are_mmdets():
    meta = _load(osp.join(CONFIG_DIR, 'metafile.yml'))
    ours = {osp.join(REPO, m['Config']): m for m in meta['Models']}
    theirs = {
        osp.basename(m['Config']): m for m in _load(
            mmdet_config_path('res2net/metafile.yml'))['Models']
    }
    assert len(theirs) == 5
    for path in COMPAT_CONFIGS:
        ref = theirs[osp.basename(path)]
        model = ours[path]
        assert model['Results'] == ref['Results']
        assert model['Converted From']['Weights'] == ref['Weights']
        for key in ('Epochs', 'Training Memory (GB)'):
            assert model['Metadata'].get(key) == ref['Metadata'].get(key)


def test_readme_table_matches_metafile():
    """The README's published numbers are the metafile's (hence mmdet's)."""
    with open(osp.join(CONFIG_DIR, 'README.md')) as f:
        readme = f.read()
    meta = _load(osp.join(CONFIG_DIR, 'metafile.yml'))
    for model in meta['Models']:
        assert f'./{osp.relpath(model["Config"], "configs/detection")}' in \
            readme, model['Config']
        for result in model.get('Results', ()):
            for value in result['Metrics'].values():
                row = next(line for line in readme.splitlines()
                           if osp.basename(model['Config']) in line
                           and 'mmdet-compatible' in line)
                assert f' {value} ' in row, (model['Name'], value)
