# Faster R-CNN with a Res2Net-101-v1b backbone: mmdet's own config, only
# the backbone (and the FPN's input channels) swapped.
_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['res2net_mm'], allow_failed_imports=False)

# The official ImageNet weights (top-1 81.23); replace with a local file in any
# supported format if this machine cannot download it.
pretrained = 'https://shanghuagao.oss-cn-beijing.aliyuncs.com/res2net/res2net101_v1b_26w_4s-0812c246.pth'  # noqa: E501

model = dict(
    backbone=dict(
        _delete_=True,  # drop every ResNet argument of the base config
        type='res2net_mm.Res2Net',
        arch='res2net101_v1b_26w_4s',
        out_indices=(0, 1, 2, 3),
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=True,
        # Any supported format: official/timm .pth, mmpretrain, mmdet, MindCV
        # .ckpt, safetensors, res2net_mm's own.
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[256, 512, 1024, 2048]))
