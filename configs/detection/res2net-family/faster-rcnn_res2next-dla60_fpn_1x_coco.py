# Faster R-CNN with a Res2NeXt-DLA-60 backbone: mmdet's own config, only the
# backbone (and the FPN's input channels) swapped.
_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['res2net_mm'], allow_failed_imports=False)

# The official ImageNet weights (top-1 78.45) as timm re-hosts them; the file
# carries 18 unused 'project' entries, which the loader drops.
pretrained = 'https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-res2net/res2next_dla60_4s-d327927b.pth'  # noqa: E501

model = dict(
    backbone=dict(
        _delete_=True,  # drop every ResNet argument of the base config
        type='res2net_mm.Res2NetDLA',
        arch='res2next_dla60',
        out_indices=(2, 3, 4, 5),  # strides 4, 8, 16, 32
        frozen_stages=2,  # everything up to stride 4
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=True,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[128, 256, 512, 1024]))
