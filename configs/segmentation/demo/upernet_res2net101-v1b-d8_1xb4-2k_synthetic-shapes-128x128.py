# UPerNet with Res2Net-101-v1b at output stride 8 on the synthetic shapes set
# of res2net_mm.datasets.synthetic_seg (5 classes: background, circle,
# triangle, rectangle, star; 128x128 images), one process (CPU works):
#   python -c "from res2net_mm.datasets.synthetic_seg import \\
#       generate_synthetic_seg as g; g('data/synthetic_shapes')"
#   python tools/train.py THIS_CONFIG
# The model is the full config's; only data, classes, norm (BN: one process,
# no SyncBN) and schedule change.
_base_ = '../upernet_res2net101-v1b-d8_4xb4-160k_ade20k-512x512.py'

data_root = 'data/synthetic_shapes'
metainfo = dict(
    classes=('background', 'circle', 'triangle', 'rectangle', 'star'),
    palette=[[0, 0, 0], [220, 20, 60], [0, 128, 0], [0, 0, 230],
             [250, 170, 30]])
crop_size = (128, 128)
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(norm_cfg=norm_cfg),
    decode_head=dict(num_classes=5, norm_cfg=norm_cfg),
    auxiliary_head=dict(num_classes=5, norm_cfg=norm_cfg))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=4,
    num_workers=2,
    dataset=dict(
        _delete_=True,
        type='BaseSegDataset',
        data_root=data_root,
        metainfo=metainfo,
        img_suffix='.png',
        seg_map_suffix='.png',
        data_prefix=dict(
            img_path='img_dir/train', seg_map_path='ann_dir/train'),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    dataset=dict(
        _delete_=True,
        type='BaseSegDataset',
        data_root=data_root,
        metainfo=metainfo,
        img_suffix='.png',
        seg_map_suffix='.png',
        data_prefix=dict(img_path='img_dir/val', seg_map_path='ann_dir/val'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator

train_cfg = dict(type='IterBasedTrainLoop', max_iters=2000, val_interval=500)
param_scheduler = [
    dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=2000,
         by_epoch=False)
]
default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=500))
