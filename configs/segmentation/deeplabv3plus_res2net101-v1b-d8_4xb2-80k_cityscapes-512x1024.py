# DeepLabV3+ with a Res2Net-101-v1b backbone at output stride 8 (dilated
# stages 3 and 4) on Cityscapes: mmseg's own ResNet-101-D8 config, only the
# backbone swapped.
_base_ = 'mmseg::deeplabv3plus/deeplabv3plus_r101-d8_4xb2-80k_cityscapes-512x1024.py'  # noqa: E501
custom_imports = dict(imports=['res2net_mm'], allow_failed_imports=False)

# The official ImageNet weights (top-1 81.23); any supported format works.
pretrained = 'https://shanghuagao.oss-cn-beijing.aliyuncs.com/res2net/res2net101_v1b_26w_4s-0812c246.pth'  # noqa: E501

norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    pretrained=None,  # the backbone's init_cfg loads the weights
    backbone=dict(
        _delete_=True,  # drop every ResNetV1c argument of the base config
        type='res2net_mm.Res2Net',
        arch='res2net101_v1b_26w_4s',
        # output stride 8: stages 3 and 4 keep stride 8, dilated 2 and 4
        strides=(1, 2, 1, 1),
        dilations=(1, 1, 2, 4),
        out_indices=(0, 1, 2, 3),
        norm_cfg=norm_cfg,
        norm_eval=False,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)))
