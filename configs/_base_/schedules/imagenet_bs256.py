# SGD for a total batch of 256 (8 GPUs x 32): mmpretrain's ResNet recipe.
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=0.0001))

param_scheduler = dict(
    type='MultiStepLR', by_epoch=True, milestones=[30, 60, 90], gamma=0.1)

# ResumableEpochBasedTrainLoop = mmengine's EpochBasedTrainLoop that also
# resumes exactly from a checkpoint written in the middle of an epoch.
train_cfg = dict(
    type='res2net_mm.ResumableEpochBasedTrainLoop',
    max_epochs=100,
    val_interval=1)
val_cfg = dict()
test_cfg = dict()

# `--auto-scale-lr` sets enable=True: lr is scaled by (GPUs x batch) / 256.
auto_scale_lr = dict(base_batch_size=256, enable=False)
