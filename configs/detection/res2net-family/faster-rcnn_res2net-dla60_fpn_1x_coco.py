# Faster R-CNN with a Res2Net-DLA-60 backbone: mmdet's own config, only the
# backbone (and the FPN's input channels) swapped.
_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['res2net_mm'], allow_failed_imports=False)

# The official ImageNet weights (top-1 78.47) as timm re-hosts them; the file
# carries 18 unused 'project' entries, which the loader drops.
pretrained = 'https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-res2net/res2net_dla60_4s-d88db7f9.pth'  # noqa: E501

model = dict(
    backbone=dict(
        _delete_=True,  # drop every ResNet argument of the base config
        type='res2net_mm.Res2NetDLA',
        arch='res2net_dla60',
        # levels 2-5: strides 4, 8, 16, 32, as ResNet's stages 1-4
        out_indices=(2, 3, 4, 5),
        # base_layer and levels 0-2 (everything up to stride 4), as
        # frozen_stages=1 freezes a ResNet's stem and first stage
        frozen_stages=2,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=True,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[128, 256, 512, 1024]))
