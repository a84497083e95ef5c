"""scikit-learn's handwritten digits as an ImageNet-style image folder.

The 1,797 real 8x8 grey-level scans of scikit-learn's ``load_digits`` (bundled in
the scikit-learn wheel, no download) are written as::

    root/
      train/<digit>/<index>.png     upscaled RGB images
      val/<digit>/<index>.png
      meta/train.txt                "<digit>/<index>.png <label>" per line
      meta/val.txt
      meta/classes.txt              one class name per line
      meta/digits.json              parameters and counts (also the ready mark)

the layout of ImageNet in mmpretrain (``data_prefix='train'``,
``ann_file='meta/train.txt'``). The split is stratified and fixed by the seed, the
files are byte-for-byte reproducible, the folder is written under a temporary name
and renamed into place, and a second call with the same parameters does nothing.
"""
import json
import os
import os.path as osp
import shutil
import tempfile
from typing import Dict

import numpy as np

CLASSES = tuple(str(d) for d in range(10))
FORMAT_VERSION = 1


def _split(labels: np.ndarray, val_ratio: float, seed: int):
    """Stratified split: the same share of every digit goes to val."""
    rng = np.random.RandomState(seed)
    val = []
    for c in range(len(CLASSES)):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        val.extend(idx[:int(round(len(idx) * val_ratio))].tolist())
    val_mask = np.zeros(len(labels), dtype=bool)
    val_mask[val] = True
    return np.flatnonzero(~val_mask), np.flatnonzero(val_mask)


def _to_rgb(image8: np.ndarray, size: int):
    """8x8 values 0..16 -> size x size RGB PIL image (bilinear upscaling)."""
    from PIL import Image
    grey = Image.fromarray(
        np.round(image8 * (255. / 16.)).astype(np.uint8), mode='L')
    return grey.resize((size, size), Image.BILINEAR).convert('RGB')


def _expected_meta(size: int, val_ratio: float, seed: int) -> Dict:
    return dict(
        format_version=FORMAT_VERSION,
        source='sklearn.datasets.load_digits',
        image_size=size,
        val_ratio=val_ratio,
        seed=seed)


def prepare_digits(root: str,
                   size: int = 32,
                   val_ratio: float = 0.2,
                   seed: int = 0) -> Dict:
    """Write the digits dataset as an ImageNet-style folder (idempotent).

    Args:
        root (str): Output folder.
        size (int): Side of the upscaled square images. Defaults to 32.
        val_ratio (float): Share of every class held out for validation.
            Defaults to 0.2 (1,437 train / 360 val images).
        seed (int): Seed of the split. Defaults to 0.

    Returns:
        dict: The contents of ``meta/digits.json`` (parameters and counts).
    """
    if not 0 < val_ratio < 1:
        raise ValueError(f'val_ratio must be in (0, 1), got {val_ratio}')
    if size < 8:
        raise ValueError(f'size must be >= 8 (the scans are 8x8), got {size}')
    expected = _expected_meta(size, val_ratio, seed)
    meta_path = osp.join(root, 'meta', 'digits.json')
    if osp.isfile(meta_path):
        with open(meta_path) as f:
            meta = json.load(f)
        if {k: meta.get(k) for k in expected} == expected:
            return meta
        raise FileExistsError(
            f'{root} holds a digits dataset written with other parameters '
            f'({ {k: meta.get(k) for k in expected} }, wanted {expected}): '
            'delete it or choose another folder')
    if osp.exists(root) and os.listdir(root):
        raise FileExistsError(
            f'{root} exists and is not a digits dataset folder: choose an '
            'empty or new folder')

    from sklearn.datasets import load_digits
    digits = load_digits()
    images, labels = digits.images, digits.target
    train_idx, val_idx = _split(labels, val_ratio, seed)

    parent = osp.dirname(osp.abspath(root))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix='.digits-tmp-', dir=parent)
    try:
        os.makedirs(osp.join(tmp, 'meta'))
        for split, indices in (('train', train_idx), ('val', val_idx)):
            lines = []
            for c in CLASSES:
                os.makedirs(osp.join(tmp, split, c))
            for i in indices:
                rel = f'{labels[i]}/{i:04d}.png'
                _to_rgb(images[i], size).save(osp.join(tmp, split, rel))
                lines.append(f'{rel} {labels[i]}\n')
            with open(osp.join(tmp, 'meta', f'{split}.txt'), 'w') as f:
                f.writelines(lines)
        with open(osp.join(tmp, 'meta', 'classes.txt'), 'w') as f:
            f.write('\n'.join(CLASSES) + '\n')
        meta = dict(expected, num_train=len(train_idx), num_val=len(val_idx))
        # Written last: its presence marks a complete folder.
        with open(osp.join(tmp, 'meta', 'digits.json'), 'w') as f:
            json.dump(meta, f, indent=2)
        if osp.isdir(root):
            os.rmdir(root)  # empty (checked above)
        os.rename(tmp, root)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        # Another process may have finished the same folder first.
        if osp.isfile(meta_path):
            return prepare_digits(root, size, val_ratio, seed)
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta
