"""A deterministic synthetic semantic segmentation set (mmseg layout).

Coloured shapes (circle, triangle, rectangle, star; rotated, of random size and
colour) on textured backgrounds, drawn by the same routines as
:mod:`res2net_mm.datasets.synthetic_coco`. Every pixel is labelled: 0 is the
background, 1 to 4 the shape under it. Written as mmseg's ``BaseSegDataset``
reads it::

    root/
      img_dir/train/000000.png ...   RGB images
      img_dir/val/000000.png ...
      ann_dir/train/000000.png ...   uint8 label maps (0 .. 4)
      ann_dir/val/000000.png ...
      .synthetic_seg.json            parameters and counts (the ready mark)

Configs read it with ``type='BaseSegDataset'``, ``img_suffix='.png'``,
``seg_map_suffix='.png'`` and ``metainfo=dict(classes=CLASSES,
palette=PALETTE)``. The same arguments give the same bytes everywhere (numpy's
PCG64, seeded per split); the set is built in a temporary folder and renamed
into place, and a second call with the same arguments does nothing.
"""
import os
import os.path as osp
from typing import Dict, Tuple

import numpy as np

from .generated import write_once
from .synthetic_coco import SHAPES, _background, draw_shapes

CLASSES = ('background', ) + SHAPES
PALETTE = [[0, 0, 0], [220, 20, 60], [0, 128, 0], [0, 0, 230],
           [250, 170, 30]]
STAMP = '.synthetic_seg.json'


def _render_split(out_dir: str, split: str, num_images: int, size: int,
                  objects: Tuple[int, int], sizes: Tuple[float, float],
                  seed: int) -> Dict:
    from PIL import Image, ImageDraw
    rng = np.random.Generator(np.random.PCG64(seed))
    img_dir = osp.join(out_dir, 'img_dir', split)
    ann_dir = osp.join(out_dir, 'ann_dir', split)
    os.makedirs(img_dir)
    os.makedirs(ann_dir)
    pixels = np.zeros(len(CLASSES), np.int64)
    for idx in range(num_images):
        canvas = Image.fromarray(_background(rng, size).astype(np.uint8))
        draw = ImageDraw.Draw(canvas)
        label_map = Image.new('L', (size, size), 0)
        label_draw = ImageDraw.Draw(label_map)
        for shape, _, flat in draw_shapes(rng, draw, size, objects, sizes):
            label_draw.polygon(flat, fill=shape + 1)  # 0 is background
        name = f'{idx:06d}.png'
        canvas.save(osp.join(img_dir, name))
        label_map.save(osp.join(ann_dir, name))
        pixels += np.bincount(np.asarray(label_map).ravel(),
                              minlength=len(CLASSES))
    return dict(images=num_images, pixels_per_class=pixels.tolist())


def generate_synthetic_seg(root: str,
                           num_train: int = 200,
                           num_val: int = 50,
                           image_size: int = 128,
                           objects_per_image: Tuple[int, int] = (1, 4),
                           object_size: Tuple[float, float] = (24, 64),
                           seed: int = 0) -> Dict:
    """Write the set under ``root`` (or reuse it when already there).

    Args:
        root (str): Output folder.
        num_train (int): Training images. Defaults to 200.
        num_val (int): Validation images. Defaults to 50.
        image_size (int): Side of the square images, >= 32. Defaults to 128.
        objects_per_image (tuple[int, int]): Inclusive range of shapes drawn
            per image (fewer when they do not fit). Defaults to (1, 4).
        object_size (tuple[float, float]): Range of the shapes' circumscribed
            diameter in pixels. Defaults to (24, 64).
        seed (int): Random seed. Defaults to 0.

    Returns:
        dict: ``root``, ``classes``, ``palette`` and per split the image
        count and the pixels of each class.

    Raises:
        ValueError: On impossible sizes or counts.
        FileExistsError: When ``root`` holds something else.
    """
    if image_size < 32:
        raise ValueError(f'image_size must be >= 32, got {image_size}')
    if num_train < 1 or num_val < 1:
        raise ValueError(f'num_train and num_val must be >= 1, got '
                         f'{num_train} and {num_val}')
    lo, hi = objects_per_image
    smin, smax = object_size
    if not 0 <= lo <= hi:
        raise ValueError(f'objects_per_image must be (min, max) with 0 <= min'
                         f' <= max, got {objects_per_image}')
    if not 4 <= smin <= smax <= image_size - 4:
        raise ValueError(f'object_size must be (min, max) with 4 <= min <= '
                         f'max <= image_size - 4 = {image_size - 4}, got '
                         f'{object_size}')
    params = dict(num_train=num_train, num_val=num_val,
                  image_size=image_size, objects_per_image=[lo, hi],
                  object_size=[smin, smax], seed=seed, version=1)
    root = osp.abspath(root)

    def render(tmp):
        summary = dict(root=root, classes=list(CLASSES), palette=PALETTE)
        for i, (split, num) in enumerate((('train', num_train),
                                          ('val', num_val))):
            summary[split] = _render_split(tmp, split, num, image_size,
                                           (lo, hi), (smin, smax),
                                           seed * 1000 + i)
        return summary

    return write_once(root, params, STAMP, 'generate_synthetic_seg', render)
