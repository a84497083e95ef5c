_base_ = [
    '../_base_/models/res2net.py',
    '../_base_/datasets/imagenet_bs32.py',
    '../_base_/schedules/imagenet_bs256.py',
    '../_base_/default_runtime.py',
]

# Res2NeXt-50: 4w x 8 groups x 4s, trained with mmpretrain's standard ImageNet
# recipe: 8 GPUs x 32 images, SGD lr 0.1, 100 epochs, lr x0.1 at epochs
# 30/60/90.
model = dict(backbone=dict(arch='res2next50'))
