"""The synthetic COCO-format set: deterministic, valid COCO, masks match boxes."""
import hashlib
import os
import os.path as osp

import numpy as np
import pytest
from PIL import Image

from res2net_mm.datasets.synthetic_coco import (IGNORE_LABEL, SHAPES, STAMP,
                                                generate_synthetic_coco)


def _digest(root):
    h = hashlib.sha256()
    for dirpath, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            if name == STAMP:  # records the absolute root
                continue
            with open(osp.join(dirpath, name), 'rb') as f:
                h.update(name.encode() + f.read())
    return h.hexdigest()


def _small(root, **kw):
    args = dict(num_train=6, num_val=3, image_size=64,
                objects_per_image=(1, 3), object_size=(12, 30))
    args.update(kw)
    return generate_synthetic_coco(str(root), **args)


def test_deterministic_and_seeded(tmp_path):
    _small(tmp_path / 'a', with_semantic=True)
    _small(tmp_path / 'b', with_semantic=True)
    _small(tmp_path / 'c', with_semantic=True, seed=1)
    assert _digest(tmp_path / 'a') == _digest(tmp_path / 'b')
    assert _digest(tmp_path / 'a') != _digest(tmp_path / 'c')


def test_coco_annotations_describe_the_pixels(tmp_path):
    from pycocotools.coco import COCO

    summary = _small(tmp_path / 'd', with_semantic=True)
    assert summary['classes'] == list(SHAPES)
    for split in ('train', 'val'):
        coco = COCO(str(tmp_path / 'd' / summary[f'{split}_ann']))
        assert len(coco.getImgIds()) == summary[split]['images']
        assert len(coco.getAnnIds()) == summary[split]['objects'] > 0
        for img_id in coco.getImgIds():
            info = coco.loadImgs(img_id)[0]
            img = Image.open(tmp_path / 'd' / split / info['file_name'])
            assert img.size == (64, 64) and img.mode == 'RGB'
            sem = np.asarray(
                Image.open(tmp_path / 'd' / 'semantic' / split /
                           info['file_name']))
            covered = np.zeros((64, 64), bool)
            for ann in coco.loadAnns(coco.getAnnIds(imgIds=img_id)):
                mask = coco.annToMask(ann).astype(bool)
                ys, xs = np.nonzero(mask)
                x, y, w, h = ann['bbox']
                # Rasterised polygon vs its exact extent: within 1.5 px.
                assert abs(xs.min() - x) <= 1.5 and abs(ys.min() - y) <= 1.5
                assert abs(xs.max() + 1 - (x + w)) <= 1.5
                assert abs(ys.max() + 1 - (y + h)) <= 1.5
                assert abs(mask.sum() - ann['area']) <= 0.25 * ann['area']
                assert not (covered & mask).any(), 'objects must not overlap'
                covered |= mask
                label = ann['category_id'] - 1
                assert (sem[mask] == label).mean() > 0.9
            assert (sem[~covered] == IGNORE_LABEL).mean() > 0.95


def test_mmdet_reads_it(tmp_path):
    from mmdet.datasets import CocoDataset

    summary = _small(tmp_path / 'e')
    ds = CocoDataset(
        data_root=str(tmp_path / 'e'), ann_file=summary['train_ann'],
        data_prefix=dict(img='train/'), metainfo=dict(classes=SHAPES),
        pipeline=[], test_mode=True)
    assert len(ds) == 6
    labels = {i['bbox_label'] for d in ds for i in d['instances']}
    assert labels <= set(range(len(SHAPES)))


def test_reuse_and_replace(tmp_path):
    root = tmp_path / 'f'
    _small(root)
    stamp = (root / '.synthetic_coco.json').stat().st_mtime_ns
    _small(root)  # same arguments: reused, not rewritten
    assert (root / '.synthetic_coco.json').stat().st_mtime_ns == stamp
    summary = _small(root, num_train=4)  # other arguments: replaced
    assert summary['train']['images'] == 4
    assert len(os.listdir(root / 'train')) == 4
    assert not [p for p in os.listdir(tmp_path) if p.startswith('.tmp')]


def test_bad_input(tmp_path):
    foreign = tmp_path / 'foreign'
    foreign.mkdir()
    (foreign / 'precious.txt').write_text('user data')
    with pytest.raises(FileExistsError, match='not written by'):
        _small(foreign)
    assert (foreign / 'precious.txt').exists()
    with pytest.raises(ValueError, match='image_size'):
        _small(tmp_path / 'g', image_size=16)
    with pytest.raises(ValueError, match='object_size'):
        _small(tmp_path / 'g', object_size=(12, 80))
    with pytest.raises(ValueError, match='objects_per_image'):
        _small(tmp_path / 'g', objects_per_image=(3, 1))
    with pytest.raises(ValueError, match='class_names'):
        _small(tmp_path / 'g', class_names=('a', 'b'))
    assert not (tmp_path / 'g').exists()
