# The seed's recipe: how MindCV trained res2net101 (top-1 79.56 / top-5 94.70
# on ImageNet-1k, 8 x Ascend 910, 32 images each), from MindCV's
# configs/res2net/res2net_101_ascend.yaml: SGD momentum 0.9, lr 0.1, weight
# decay 1e-4, label smoothing 0.1, RandomResizedCrop 224 (bilinear) + flip +
# color jitter 0.4 + random erasing 0.5, test crop 0.875, 140 epochs, lr x0.1
# every 30 epochs, no warm-up. MindCV trained in fp16 (loss scale 1024): add
# --amp to tools/train.py.
_base_ = [
    '../_base_/models/res2net.py',
    '../_base_/datasets/imagenet_bs32_mindcv.py',
    '../_base_/schedules/imagenet_bs256.py',
    '../_base_/default_runtime.py',
]

model = dict(
    backbone=dict(arch='res2net101'),
    head=dict(
        loss=dict(
            type='LabelSmoothLoss',
            label_smooth_val=0.1,
            mode='original',
            loss_weight=1.0)),
)

param_scheduler = dict(
    type='MultiStepLR', by_epoch=True, milestones=[30, 60, 90, 120], gamma=0.1)

train_cfg = dict(max_epochs=140, val_interval=5)
