"""Helpers shared by the detection tests: config paths and a tiny-scale setup."""
import copy
import glob
import os.path as osp

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG_DIR = osp.join(REPO, 'configs', 'detection')
NATIVE_CONFIGS = sorted(glob.glob(osp.join(CONFIG_DIR, '*_coco.py')))
COMPAT_CONFIGS = sorted(
    glob.glob(osp.join(CONFIG_DIR, 'mmdet-compatible', '*_coco.py')))
ALL_CONFIGS = NATIVE_CONFIGS + COMPAT_CONFIGS
TINY_SCALE = (128, 128)


def config_id(path: str) -> str:
    return osp.relpath(path, CONFIG_DIR)


def mmdet_config_path(rel: str) -> str:
    """Path of a config shipped in the mmdet wheel (``mmdet::rel``)."""
    import mmdet
    return osp.join(osp.dirname(mmdet.__file__), '.mim', 'configs', rel)


def _shrink_pipeline(pipeline):
    for t in pipeline:
        if t['type'] == 'Resize':
            t['scale'] = TINY_SCALE
            t['keep_ratio'] = True
        elif t['type'] in ('RandomResize', 'RandomChoiceResize'):
            raise AssertionError(f'{t["type"]} needs its own tiny scale')


def _use_tiny_set(loader, root, split):
    loader.batch_size = 1
    loader.num_workers = 0
    loader.persistent_workers = False
    ds = loader.dataset
    ds.data_root = root
    ds.ann_file = f'annotations/instances_{split}.json'
    prefix = dict(img=f'{split}/')
    if ds.get('data_prefix', {}).get('seg'):  # HTC's semantic maps
        prefix['seg'] = f'semantic/{split}/'
    ds.data_prefix = prefix
    _shrink_pipeline(ds.pipeline)


def tiny_run_cfg(cfg, root: str, work_dir: str):
    """Point a COCO config at the tiny set, 128 px, batch 1, one epoch.

    Only data, schedule length and run-time plumbing change; the model is the
    config's own, except that the backbone starts from its default random
    init (no download).
    """
    cfg = copy.deepcopy(cfg)
    cfg.work_dir = work_dir
    cfg.model.backbone.pop('init_cfg')
    for split, key in (('train', 'train_dataloader'),
                       ('val', 'val_dataloader'), ('val', 'test_dataloader')):
        _use_tiny_set(cfg[key], root, split)
    for key in ('val_evaluator', 'test_evaluator'):
        cfg[key].ann_file = osp.join(root, 'annotations/instances_val.json')
        cfg[key].backend_args = None
    # Random weights after 2 iterations score below the usual 0.05: keep a
    # few boxes anyway so that the metric has something to evaluate.
    test_cfg = cfg.model.test_cfg
    head_cfg = test_cfg.rcnn if 'rcnn' in test_cfg else test_cfg
    head_cfg.score_thr = 0.0
    head_cfg.max_per_img = 10
    cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=1,
                         val_interval=1000)
    cfg.default_hooks.checkpoint = None  # a 300 MB file per config otherwise
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'))
    cfg.pop('auto_scale_lr', None)
    cfg.log_level = 'WARNING'
    return cfg
