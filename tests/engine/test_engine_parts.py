"""Registry lookups, RNG snapshots and the CPU distributed set-up."""
import random

import numpy as np
import pytest
import torch
import torch.distributed as dist
from mmengine.config import Config
from mmengine.registry import HOOKS, LOOPS

from res2net_mm.engine import (RNGStateHook, ResumableEpochBasedTrainLoop,
                               get_rng_state, set_rng_state,
                               setup_cpu_distributed)

from tests.models.utils import free_port


def test_scoped_types_resolve_from_mmengine_roots():
    assert LOOPS.get('res2net_mm.ResumableEpochBasedTrainLoop') is \
        ResumableEpochBasedTrainLoop
    assert HOOKS.get('res2net_mm.RNGStateHook') is RNGStateHook


def test_rng_state_roundtrip():
    state = get_rng_state()
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    set_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == a


def test_cpu_distributed_needs_launcher_env(monkeypatch):
    for name in ('RANK', 'WORLD_SIZE', 'MASTER_PORT'):
        monkeypatch.delenv(name, raising=False)
    cfg = Config(dict())
    assert setup_cpu_distributed(cfg, 'none') is False
    with pytest.raises(RuntimeError, match='dist_train.sh'):
        setup_cpu_distributed(cfg, 'pytorch')
    with pytest.raises(ValueError, match='launcher'):
        setup_cpu_distributed(cfg, 'magic')


@pytest.mark.skipif(torch.cuda.is_available(),
                    reason='with CUDA mmengine initialises nccl itself')
def test_cpu_distributed_initialises_gloo(monkeypatch):
    port = free_port()
    monkeypatch.setenv('RANK', '0')
    monkeypatch.setenv('WORLD_SIZE', '1')
    monkeypatch.setenv('MASTER_ADDR', '127.0.0.1')
    monkeypatch.setenv('MASTER_PORT', str(port))
    cfg = Config(dict(env_cfg=dict(dist_cfg=dict(backend='nccl', timeout=20))))
    try:
        assert setup_cpu_distributed(cfg, 'pytorch') is True
        assert dist.get_backend() == 'gloo'
        assert dist.get_world_size() == 1
        assert cfg.model_wrapper_cfg.device_ids is None
        assert cfg.model_wrapper_cfg.type == 'MMDistributedDataParallel'
        # already initialised: nothing more to do
        assert setup_cpu_distributed(cfg, 'pytorch') is False
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
