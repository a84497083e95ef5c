# mmdet's published Faster R-CNN 2x:
#     res2net_mm://mmdet/faster-rcnn_res2net-101_fpn_2x_coco
# (its AP as mmdet reports it: configs/detection/metafile.yml). Test it with
# `tools/test.py THIS_CONFIG <that name>`; no load_from here, so training
# starts from the ImageNet backbone as mmdet's recipe does. With
# res2net_mm's backbone in the mmdet-compatible mode: mmdet's checkpoint of this
# detector loads into it and gives mmdet's outputs exactly (bit for bit).
#
# ``stage_pool='strided'`` reproduces mmdet 3.3.0's Bottle2neck, which skips the
# pool of the last split where the stride is 1 (layer1's first block); mmdet
# trained its published detectors that way. The rest (mmdet's Res2Net is always
# the v1d = v1b variant: deep stem, average-pool shortcuts) is the named arch.
_base_ = 'mmdet::res2net/faster-rcnn_res2net-101_fpn_2x_coco.py'
custom_imports = dict(imports=['res2net_mm'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='res2net_mm.Res2Net',
        arch='res2net101_v1b_26w_4s',
        stage_pool='strided',
        # per-split convs, as mmdet runs them: outputs bit-identical to mmdet's
        fast_path=False,
        out_indices=(0, 1, 2, 3),
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=True,
        # mmdet's own ImageNet weights, in mmdet's naming (stem.0 ... stem.7).
        init_cfg=dict(
            type='Pretrained',
            checkpoint='open-mmlab://res2net101_v1d_26w_4s')),
    neck=dict(in_channels=[256, 512, 1024, 2048]))
