# Faster R-CNN with a bLRes2Net-50 backbone: mmdet's own config with the
# backbone swapped and the pyramid fitted to its strides.
_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['res2net_mm'], allow_failed_imports=False)

# No ImageNet weights of bLRes2Net-50 were published: train
# configs/res2net/blres2net50-w26-s4_8xb32_in1k.py first (its last
# checkpoint is this file), or point this at your own weights.
pretrained = 'work_dirs/blres2net50-w26-s4_8xb32_in1k/epoch_100.pth'

# Big-Little Net's stages end at strides 8, 16, 16 and 32 (its stem already
# reaches stride 4 and layer3 keeps layer2's resolution): take layer1 (8),
# layer3 (16, deeper than layer2) and layer4 (32); the FPN adds stride 64.
model = dict(
    backbone=dict(
        _delete_=True,  # drop every ResNet argument of the base config
        type='res2net_mm.BLRes2Net',
        arch='blres2net50',
        out_indices=(0, 2, 3),
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=True,
        # an mmpretrain ImageClassifier checkpoint (mmengine's loader)
        init_cfg=dict(
            type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    neck=dict(in_channels=[256, 1024, 2048], num_outs=4),
    rpn_head=dict(anchor_generator=dict(strides=[8, 16, 32, 64])),
    roi_head=dict(bbox_roi_extractor=dict(featmap_strides=[8, 16, 32])))
