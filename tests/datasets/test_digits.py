"""The digits dataset writer: real data, ImageNet layout, deterministic, atomic."""
import filecmp
import os
import os.path as osp

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from res2net_mm.datasets import prepare_digits


@pytest.fixture(scope='module')
def written(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('a') / 'digits')
    return root, prepare_digits(root)


def _ann(root, split):
    with open(osp.join(root, 'meta', f'{split}.txt')) as f:
        return [line.split() for line in f]


def test_layout_counts_and_split(written):
    root, meta = written
    train, val = _ann(root, 'train'), _ann(root, 'val')
    assert (meta['num_train'], meta['num_val']) == (len(train), len(val))
    assert len(train) + len(val) == 1797
    names = [p for p, _ in train] + [p for p, _ in val]
    assert len(set(names)) == 1797  # disjoint: each scan in one split only
    for split, ann in (('train', train), ('val', val)):
        for rel, label in ann[:50]:
            assert rel.split('/')[0] == label
            assert osp.isfile(osp.join(root, split, rel))
    # stratified: every digit has 20% (+-1 image) of its scans in val
    digits = load_digits()
    for c in range(10):
        n = int((digits.target == c).sum())
        n_val = sum(int(label) == c for _, label in val)
        assert abs(n_val - 0.2 * n) <= 1
    with open(osp.join(root, 'meta', 'classes.txt')) as f:
        assert f.read().split() == [str(c) for c in range(10)]


def test_images_are_the_real_scans_upscaled(written):
    root, _ = written
    digits = load_digits()
    for rel, label in _ann(root, 'val')[:20]:
        index = int(osp.basename(rel)[:-4])
        assert digits.target[index] == int(label)
        img = Image.open(osp.join(root, 'val', rel))
        assert img.mode == 'RGB' and img.size == (32, 32)
        arr = np.asarray(img).astype(np.float64)
        assert (arr[..., 0] == arr[..., 1]).all()  # grey in RGB
        # shrinking back to 8x8 gives the original scan (0..16 -> 0..255)
        small = np.asarray(
            img.convert('L').resize((8, 8), Image.BOX), dtype=np.float64)
        scan = digits.images[index] * 255 / 16
        assert np.corrcoef(small.ravel(), scan.ravel())[0, 1] > 0.95


def test_deterministic_and_idempotent(written, tmp_path):
    root, meta = written
    other = str(tmp_path / 'digits')
    assert prepare_digits(other) == meta
    for split in ('train', 'val'):
        rels = [p for p, _ in _ann(root, split)]
        match, mismatch, errors = filecmp.cmpfiles(
            osp.join(root, split), osp.join(other, split), rels,
            shallow=False)
        assert not mismatch and not errors and len(match) == len(rels)
    stamp = osp.getmtime(osp.join(other, 'meta', 'digits.json'))
    assert prepare_digits(other) == meta  # second call: nothing rewritten
    assert osp.getmtime(osp.join(other, 'meta', 'digits.json')) == stamp
    # no temporary folders left next to it
    assert os.listdir(tmp_path) == ['digits']


def test_bad_input_is_refused(written, tmp_path):
    root, _ = written
    with pytest.raises(FileExistsError, match='other parameters'):
        prepare_digits(root, size=64)
    foreign = tmp_path / 'foreign'
    foreign.mkdir()
    (foreign / 'x.txt').write_text('not a dataset')
    with pytest.raises(FileExistsError, match='not a digits dataset'):
        prepare_digits(str(foreign))
    with pytest.raises(ValueError, match='val_ratio'):
        prepare_digits(str(tmp_path / 'v'), val_ratio=1.5)
    with pytest.raises(ValueError, match='size'):
        prepare_digits(str(tmp_path / 's'), size=4)
