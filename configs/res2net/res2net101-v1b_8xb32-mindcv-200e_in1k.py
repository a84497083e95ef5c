# The seed's recipe: how MindCV trained res2net101_v1b (top-1 81.14 / top-5
# 95.41 on ImageNet-1k, 8 x Ascend 910, 32 images each), from MindCV's
# configs/res2net/res2net_101_v1b_ascend.yaml: SGD momentum 0.9, lr 0.1, weight
# decay 1e-4, label smoothing 0.1, RandomResizedCrop 224 (bilinear) + flip +
# color jitter 0.4 + random erasing 0.5, test crop 0.875, 200 epochs, cosine
# decay to 0 after 4 linear warm-up epochs. MindCV trained in fp16 (loss scale
# 1024): add --amp to tools/train.py.
_base_ = [
    '../_base_/models/res2net.py',
    '../_base_/datasets/imagenet_bs32_mindcv.py',
    '../_base_/schedules/imagenet_bs256.py',
    '../_base_/default_runtime.py',
]

model = dict(
    backbone=dict(arch='res2net101_v1b'),
    head=dict(
        loss=dict(
            type='LabelSmoothLoss',
            label_smooth_val=0.1,
            mode='original',
            loss_weight=1.0)),
)

param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=0.001,
        by_epoch=True,
        begin=0,
        end=4,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        T_max=196,
        eta_min=0.,
        by_epoch=True,
        begin=4,
        end=200,
        convert_to_iter_based=True),
]

train_cfg = dict(max_epochs=200, val_interval=5)
