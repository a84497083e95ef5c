"""The synthetic segmentation set: layout mmseg reads, labels, determinism."""
import os.path as osp

import numpy as np
import pytest

from res2net_mm.datasets.synthetic_seg import (CLASSES, PALETTE,
                                               generate_synthetic_seg)


def _read(path):
    from PIL import Image
    return np.asarray(Image.open(path))


def test_layout_labels_and_mmseg_reads_it(tmp_path):
    from mmseg.datasets import BaseSegDataset
    root = str(tmp_path / 'shapes')
    summary = generate_synthetic_seg(root, num_train=3, num_val=2,
                                     image_size=64, object_size=(16, 40))
    assert summary['classes'] == list(CLASSES) and len(PALETTE) == 5
    for split, n in (('train', 3), ('val', 2)):
        img = _read(osp.join(root, 'img_dir', split, '000000.png'))
        ann = _read(osp.join(root, 'ann_dir', split, '000000.png'))
        assert img.shape == (64, 64, 3) and img.dtype == np.uint8
        assert ann.shape == (64, 64) and ann.max() < len(CLASSES)
        pixels = summary[split]['pixels_per_class']
        assert sum(pixels) == n * 64 * 64 and pixels[0] > 0
        assert sum(pixels[1:]) > 0  # shapes were drawn
    ds = BaseSegDataset(
        data_root=root, data_prefix=dict(img_path='img_dir/train',
                                         seg_map_path='ann_dir/train'),
        img_suffix='.png', seg_map_suffix='.png',
        metainfo=dict(classes=CLASSES, palette=PALETTE), pipeline=[])
    assert len(ds) == 3
    assert ds.get_data_info(0)['seg_map_path'].endswith(
        osp.join('ann_dir', 'train', '000000.png'))


def test_deterministic_reused_and_safe(tmp_path):
    a, b = str(tmp_path / 'a'), str(tmp_path / 'b')
    generate_synthetic_seg(a, num_train=2, num_val=1, image_size=48,
                           object_size=(12, 30))
    generate_synthetic_seg(b, num_train=2, num_val=1, image_size=48,
                           object_size=(12, 30))
    for sub in ('img_dir/train/000001.png', 'ann_dir/val/000000.png'):
        with open(osp.join(a, sub), 'rb') as f, open(osp.join(b, sub),
                                                     'rb') as g:
            assert f.read() == g.read()
    stamp = osp.join(a, '.synthetic_seg.json')
    mtime = osp.getmtime(stamp)
    generate_synthetic_seg(a, num_train=2, num_val=1, image_size=48,
                           object_size=(12, 30))
    assert osp.getmtime(stamp) == mtime  # same arguments: nothing rewritten
    # other arguments replace the set it wrote
    generate_synthetic_seg(a, num_train=1, num_val=1, image_size=48,
                           object_size=(12, 30))
    assert not osp.exists(osp.join(a, 'img_dir/train/000001.png'))
    foreign = tmp_path / 'foreign'
    foreign.mkdir()
    (foreign / 'keep.txt').write_text('x')
    with pytest.raises(FileExistsError, match='not written by'):
        generate_synthetic_seg(str(foreign))
    with pytest.raises(ValueError, match='object_size'):
        generate_synthetic_seg(str(tmp_path / 'c'), image_size=32,
                               object_size=(8, 40))
    assert not any(p.name.startswith('.tmp-') for p in tmp_path.iterdir())
