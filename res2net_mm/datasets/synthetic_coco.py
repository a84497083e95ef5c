"""A deterministic synthetic COCO-format instance segmentation dataset.

Coloured shapes (circles, triangles, rectangles, stars; rotated, of random size and
colour) on textured backgrounds (smooth noise, stripes and grain). Every object is
a polygon, so the COCO annotations (``bbox``, ``segmentation``, ``area``) describe
exactly what is drawn, and objects never overlap, so every mask is complete.

The files are written in the layout mmdet's ``CocoDataset`` reads::

    root/
      annotations/instances_train.json, instances_val.json
      train/000000.png ...
      val/000000.png ...
      semantic/train/000000.png ...   (only with ``with_semantic=True``)

The semantic maps (for HTC's semantic head) hold the 0-based label of the shape
covering each pixel and 255 (ignored) elsewhere.

The same arguments give the same bytes on every machine: numpy's PCG64 generator
draws every random number, seeded per split.
"""
import json
import math
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .generated import write_once

SHAPES = ('circle', 'triangle', 'rectangle', 'star')
STAMP = '.synthetic_coco.json'
IGNORE_LABEL = 255


def _polygon(shape: str, cx: float, cy: float, r: float, angle: float,
             aspect: float) -> np.ndarray:
    """Vertices (N, 2) of a shape of circumradius ``r`` centred at (cx, cy)."""
    if shape == 'circle':
        t = np.linspace(0, 2 * math.pi, 32, endpoint=False)
        pts = np.stack([np.cos(t), np.sin(t)], 1)
    elif shape == 'triangle':
        t = np.array([0, 2, 4]) * math.pi / 3 - math.pi / 2
        pts = np.stack([np.cos(t), np.sin(t)], 1)
    elif shape == 'rectangle':
        h = aspect / math.hypot(1, aspect)
        w = 1 / math.hypot(1, aspect)
        pts = np.array([[-w, -h], [w, -h], [w, h], [-w, h]])
    elif shape == 'star':
        t = np.arange(10) * math.pi / 5 - math.pi / 2
        rad = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
        pts = np.stack([rad * np.cos(t), rad * np.sin(t)], 1)
    else:
        raise ValueError(f'unknown shape {shape!r}: choose from {SHAPES}')
    rot = np.array([[math.cos(angle), -math.sin(angle)],
                    [math.sin(angle), math.cos(angle)]])
    return pts @ rot.T * r + np.array([cx, cy])


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A float (size, size, 3) texture in [0, 255]: smooth noise + stripes."""
    from PIL import Image
    grid = rng.uniform(0, 255, (6, 6, 3)).astype(np.uint8)
    smooth = np.asarray(
        Image.fromarray(grid).resize((size, size), Image.BICUBIC), np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    theta = rng.uniform(0, math.pi)
    period = rng.uniform(6, 24)
    stripes = np.sin(
        (xx * math.cos(theta) + yy * math.sin(theta)) * 2 * math.pi / period)
    stripe_col = rng.uniform(-40, 40, 3).astype(np.float32)
    grain = rng.normal(0, 8, (size, size, 3)).astype(np.float32)
    # Muted: textures stay below the shapes' saturation but still vary a lot.
    img = 0.6 * smooth + 50 + stripes[..., None] * stripe_col + grain
    return np.clip(img, 0, 255)


def _place_objects(rng, size, num, min_size, max_size, max_tries=50):
    """Non-overlapping (cx, cy, r) circles that fit inside the image."""
    placed: List[Tuple[float, float, float]] = []
    for _ in range(num):
        for _ in range(max_tries):
            r = rng.uniform(min_size, max_size) / 2
            cx = rng.uniform(r + 1, size - r - 1)
            cy = rng.uniform(r + 1, size - r - 1)
            if all(math.hypot(cx - x, cy - y) > r + q + 2
                   for x, y, q in placed):
                placed.append((cx, cy, r))
                break
    return placed


def draw_shapes(rng, draw, size: int, objects: Tuple[int, int],
                sizes: Tuple[float, float]):
    """Draw a random number of non-overlapping shapes in saturated colours.

    Yields ``(label, pts, flat)`` per shape once it is drawn: its index in
    ``SHAPES``, its polygon as an (N, 2) array and as the flat list PIL and
    COCO use, so that callers can add their own annotations.
    """
    num = int(rng.integers(objects[0], objects[1] + 1))
    for cx, cy, r in _place_objects(rng, size, num, *sizes):
        label = int(rng.integers(len(SHAPES)))
        pts = _polygon(SHAPES[label], cx, cy, r,
                       rng.uniform(0, 2 * math.pi), rng.uniform(0.5, 1.0))
        # Saturated colours: one channel high, one low.
        color = rng.permutation(
            [rng.integers(180, 256), rng.integers(0, 70),
             rng.integers(0, 256)])
        flat = [float(v) for v in pts.round(2).ravel()]
        draw.polygon(flat, fill=tuple(int(c) for c in color))
        yield label, pts, flat


def _polygon_area(pts: np.ndarray) -> float:
    x, y = pts[:, 0], pts[:, 1]
    return float(0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def _render_split(out_dir: str, split: str, num_images: int, size: int,
                  objects: Tuple[int, int], sizes: Tuple[float, float],
                  class_names: Sequence[str], seed: int,
                  with_semantic: bool) -> Dict:
    from PIL import Image, ImageDraw
    rng = np.random.Generator(np.random.PCG64(seed))
    os.makedirs(osp.join(out_dir, split))
    if with_semantic:
        os.makedirs(osp.join(out_dir, 'semantic', split))
    images, annotations = [], []
    for idx in range(num_images):
        img = _background(rng, size)
        canvas = Image.fromarray(img.astype(np.uint8))
        draw = ImageDraw.Draw(canvas)
        sem = Image.new('L', (size, size), IGNORE_LABEL)
        sem_draw = ImageDraw.Draw(sem)
        for label, pts, flat in draw_shapes(rng, draw, size, objects, sizes):
            sem_draw.polygon(flat, fill=label)
            x0, y0 = pts.min(0)
            x1, y1 = pts.max(0)
            annotations.append(
                dict(
                    id=len(annotations) + 1,
                    image_id=idx + 1,
                    category_id=label + 1,
                    bbox=[round(float(x0), 2), round(float(y0), 2),
                          round(float(x1 - x0), 2), round(float(y1 - y0), 2)],
                    area=round(_polygon_area(pts), 2),
                    segmentation=[flat],
                    iscrowd=0))
        name = f'{idx:06d}.png'
        canvas.save(osp.join(out_dir, split, name))
        if with_semantic:
            sem.save(osp.join(out_dir, 'semantic', split, name))
        images.append(
            dict(id=idx + 1, file_name=name, width=size, height=size))
    categories = [
        dict(id=i + 1, name=n, supercategory='shape')
        for i, n in enumerate(class_names)
    ]
    coco = dict(images=images, annotations=annotations, categories=categories)
    with open(osp.join(out_dir, 'annotations', f'instances_{split}.json'),
              'w') as f:
        json.dump(coco, f)
    return dict(images=len(images), objects=len(annotations))


def generate_synthetic_coco(root: str,
                            num_train: int = 400,
                            num_val: int = 100,
                            image_size: int = 128,
                            objects_per_image: Tuple[int, int] = (1, 4),
                            object_size: Tuple[float, float] = (24, 64),
                            class_names: Optional[Sequence[str]] = None,
                            with_semantic: bool = False,
                            seed: int = 0) -> Dict:
    """Write the dataset under ``root`` (or reuse it when already there).

    The dataset is built in a temporary folder next to ``root`` and renamed
    into place, so an interrupted run never leaves a half-written dataset.
    A stamp file records the arguments: a second call with the same arguments
    returns at once; with other arguments the old dataset (only one this
    function wrote) is replaced.

    Args:
        root (str): Output folder.
        num_train (int): Training images. Defaults to 400.
        num_val (int): Validation images. Defaults to 100.
        image_size (int): Side of the square images, >= 32. Defaults to 128.
        objects_per_image (tuple[int, int]): Inclusive range of objects drawn
            per image (fewer when they do not fit). Defaults to (1, 4).
        object_size (tuple[float, float]): Range of the objects' circumscribed
            diameter in pixels. Defaults to (24, 64).
        class_names (Sequence[str], optional): Category names written in the
            annotation files; shape ``i`` of :data:`SHAPES` is category
            ``i + 1``. More names than shapes are allowed (e.g. COCO's 80, so
            that unmodified COCO configs read the files). Defaults to
            :data:`SHAPES`.
        with_semantic (bool): Also write semantic label maps (for HTC).
        seed (int): Random seed. Defaults to 0.

    Returns:
        dict: ``root``, ``classes``, ``train``/``val`` (image and object
        counts), and the relative paths of the annotation files.
    """
    class_names = tuple(class_names or SHAPES)
    if len(class_names) < len(SHAPES):
        raise ValueError(f'class_names needs at least {len(SHAPES)} names '
                         f'(one per shape in {SHAPES}), got {class_names}')
    if image_size < 32:
        raise ValueError(f'image_size must be >= 32, got {image_size}')
    if num_train < 1 or num_val < 1:
        raise ValueError(f'num_train and num_val must be >= 1, got '
                         f'{num_train} and {num_val}')
    lo, hi = objects_per_image
    if not 1 <= lo <= hi:
        raise ValueError(f'objects_per_image must be (min, max) with 1 <= '
                         f'min <= max, got {objects_per_image}')
    smin, smax = object_size
    if not 4 <= smin <= smax <= image_size - 4:
        raise ValueError(f'object_size must be (min, max) with 4 <= min <= '
                         f'max <= image_size - 4 = {image_size - 4}, got '
                         f'{object_size}')
    params = dict(num_train=num_train, num_val=num_val,
                  image_size=image_size, objects_per_image=[lo, hi],
                  object_size=[smin, smax], class_names=list(class_names),
                  with_semantic=with_semantic, seed=seed, version=1)
    root = osp.abspath(root)

    def render(tmp):
        os.makedirs(osp.join(tmp, 'annotations'))
        summary = dict(root=root, classes=list(class_names))
        for i, (split, num) in enumerate((('train', num_train),
                                          ('val', num_val))):
            summary[split] = _render_split(
                tmp, split, num, image_size, (lo, hi), (smin, smax),
                class_names, seed * 1000 + i, with_semantic)
            summary[f'{split}_ann'] = f'annotations/instances_{split}.json'
        return summary

    return write_once(root, params, STAMP, 'generate_synthetic_coco', render)
