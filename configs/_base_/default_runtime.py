# Runtime settings shared by the classification configs (mmpretrain 1.x).
default_scope = 'mmpretrain'

# The backbone (res2net_mm.Res2Net) and the resumable training loop live in
# res2net_mm; importing it registers them.
custom_imports = dict(
    imports=['res2net_mm', 'res2net_mm.engine'], allow_failed_imports=False)

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=100),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='VisualizationHook', enable=False),
)

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    # nccl on GPUs; without CUDA the tools switch to gloo by themselves.
    dist_cfg=dict(backend='nccl'),
)

visualizer = dict(
    type='UniversalVisualizer', vis_backends=[dict(type='LocalVisBackend')])

log_level = 'INFO'
load_from = None
resume = False

# Set seed=<int>, deterministic=True for reproducible runs (and exact resume).
randomness = dict(seed=None, deterministic=False)
