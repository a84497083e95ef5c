_base_ = [
    '../_base_/models/res2net.py',
    '../_base_/datasets/imagenet_bs32.py',
    '../_base_/schedules/imagenet_bs256.py',
    '../_base_/default_runtime.py',
]

# bLRes2Net-50 (Big-Little Net, alpha 2, beta 4, with 26w x 4s Res2Net blocks;
# paper top-1 78.32, no public code or weights), trained with mmpretrain's
# standard ImageNet recipe: 8 GPUs x 32 images, SGD lr 0.1, 100 epochs, lr
# x0.1 at epochs 30/60/90 (the Res2Net paper's recipe too).
model = dict(
    backbone=dict(
        _delete_=True,
        type='res2net_mm.BLRes2Net',
        arch='blres2net50',
        out_indices=(3, )),
    head=dict(in_channels=2048))
