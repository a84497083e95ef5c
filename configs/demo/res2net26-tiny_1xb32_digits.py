# The demo: a scaled-down Res2Net trained from scratch on scikit-learn's
# handwritten digits (1,797 real 8x8 scans, 10 classes) written as an
# ImageNet-style folder of 32x32 RGB images by res2net_mm.datasets.prepare_digits
# (tools/demo/classification.py does it). Runs on a CPU.
_base_ = ['../_base_/default_runtime.py']

data_root = 'data/digits'
classes = ('0', '1', '2', '3', '4', '5', '6', '7', '8', '9')

# Res2Net-26 (2 Bottle2neck blocks per stage) scaled down: 16 base channels,
# 4 scales of 8 channels in the first stage (8, 16, 32, 64 in stages 1-4).
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='res2net_mm.Res2Net',
        depth=26,
        scales=4,
        base_width=8,
        stem_channels=16,
        base_channels=16,
        out_indices=(3, )),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=10,
        in_channels=512,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, )),
)

data_preprocessor = dict(
    num_classes=10,
    # the digits are white on black: map 0..255 to about -1..1
    mean=[127.5, 127.5, 127.5],
    std=[127.5, 127.5, 127.5],
    to_rgb=True,
)

# Digits must not be flipped; small crops and shifts only.
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='RandomResizedCrop',
        scale=32,
        crop_ratio_range=(0.7, 1.0),
        aspect_ratio_range=(0.85, 1.15)),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='PackInputs'),
]

train_dataloader = dict(
    batch_size=32,
    num_workers=0,
    dataset=dict(
        type='CustomDataset',
        data_root=data_root,
        data_prefix='train',
        ann_file='meta/train.txt',
        classes=classes,
        pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True),
)
val_dataloader = dict(
    batch_size=64,
    num_workers=0,
    dataset=dict(
        type='CustomDataset',
        data_root=data_root,
        data_prefix='val',
        ann_file='meta/val.txt',
        classes=classes,
        pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False),
)
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_dataloader = val_dataloader
test_evaluator = val_evaluator

# 12 epochs of 45 iterations: ~98.5% top-1 in well under a minute of training
# on 2 cores (3 epochs already give ~95%).
max_epochs = 12
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=5e-4))
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=0.1,
        by_epoch=True,
        begin=0,
        end=2,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        eta_min=0.,
        by_epoch=True,
        begin=2,
        end=max_epochs,
        convert_to_iter_based=True),
]
train_cfg = dict(
    type='res2net_mm.ResumableEpochBasedTrainLoop',
    max_epochs=max_epochs,
    val_interval=4)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=32, enable=False)

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=15),
    checkpoint=dict(
        type='CheckpointHook',
        interval=4,
        max_keep_ckpts=2,
        save_best='accuracy/top1',
        rule='greater'),
)
randomness = dict(seed=0, deterministic=False)
