# Faster R-CNN with an SE-Res2Net-50 backbone: mmdet's own config, only the
# backbone (and the FPN's input channels) swapped.
_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['res2net_mm'], allow_failed_imports=False)

# No ImageNet weights of SE-Res2Net-50 were published: train
# configs/res2net/se-res2net50-w26-s4_8xb32_in1k.py first (its last
# checkpoint is this file), or point this at your own weights.
pretrained = 'work_dirs/se-res2net50-w26-s4_8xb32_in1k/epoch_100.pth'

model = dict(
    backbone=dict(
        _delete_=True,  # drop every ResNet argument of the base config
        type='res2net_mm.Res2Net',
        arch='se_res2net50',
        out_indices=(0, 1, 2, 3),
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=True,
        # an mmpretrain ImageClassifier checkpoint: keep its backbone
        init_cfg=dict(
            type='Pretrained',
            checkpoint=pretrained,
            prefix='backbone.',
            trust=True)),
    neck=dict(in_channels=[256, 512, 1024, 2048]))
