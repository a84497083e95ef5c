_base_ = [
    '../_base_/models/res2net.py',
    '../_base_/datasets/imagenet_bs32.py',
    '../_base_/schedules/imagenet_bs256.py',
    '../_base_/default_runtime.py',
]

# Res2Net-DLA-60 (DLA-60 with 28w x 4s Res2Net blocks; = timm dla60_res2net,
# official top-1 78.47), trained with mmpretrain's standard ImageNet recipe:
# 8 GPUs x 32 images, SGD lr 0.1, 100 epochs, lr x0.1 at epochs 30/60/90.
model = dict(
    backbone=dict(
        _delete_=True,
        type='res2net_mm.Res2NetDLA',
        arch='res2net_dla60',
        out_indices=(5, )),
    head=dict(in_channels=1024))
