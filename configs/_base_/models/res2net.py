# mmpretrain ImageClassifier around res2net_mm's Res2Net. Configs choose the
# architecture with model.backbone.arch (a name from res2net_mm.VARIANTS).
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='res2net_mm.Res2Net', arch='res2net50_26w_4s', out_indices=(3, )),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=2048,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, 5),
    ))
