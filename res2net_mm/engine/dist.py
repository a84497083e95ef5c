"""Distributed training without GPUs (gloo) under mmengine 0.10.7.

mmengine's ``init_dist`` calls ``torch.cuda.set_device`` unconditionally, which
fails on a machine without a CUDA driver, and its Runner wraps the model in DDP
with ``device_ids=[LOCAL_RANK]``, which DDP refuses for CPU modules. When CUDA is
not available, :func:`setup_cpu_distributed` initialises a gloo process group
from the launcher's environment before the Runner is built (the Runner then
skips its own initialisation) and makes the config wrap the model without
``device_ids``. With a GPU it does nothing and mmengine works as usual (nccl).
"""
import atexit
import datetime
import os
import subprocess
import sys
import threading
from typing import Optional

import torch
import torch.distributed as torch_dist

DEFAULT_TIMEOUT_S = 1800


def _env_int(name: str) -> int:
    try:
        return int(os.environ[name])
    except KeyError:
        raise RuntimeError(
            f'environment variable {name} is not set: start distributed '
            'training with tools/dist_train.sh (torchrun), '
            'tools/slurm_train.sh (srun) or mpirun, or use --launcher none'
        ) from None


def _rendezvous_env(launcher: str) -> None:
    """Fill RANK/WORLD_SIZE/LOCAL_RANK/MASTER_* from the launcher's variables."""
    if launcher == 'pytorch':
        # torchrun sets all of these; check them for a clear error otherwise.
        for name in ('RANK', 'WORLD_SIZE', 'MASTER_PORT'):
            _env_int(name)
        os.environ.setdefault('MASTER_ADDR', 'localhost')
        os.environ.setdefault('LOCAL_RANK', '0')
    elif launcher == 'slurm':
        # Same conventions as mmengine's _init_dist_slurm.
        rank = _env_int('SLURM_PROCID')
        world = _env_int('SLURM_NTASKS')
        os.environ['RANK'] = str(rank)
        os.environ['WORLD_SIZE'] = str(world)
        os.environ['LOCAL_RANK'] = os.environ.get('SLURM_LOCALID', '0')
        if 'MASTER_ADDR' not in os.environ:
            node_list = os.environ.get('SLURM_NODELIST', 'localhost')
            addr = subprocess.getoutput(
                f'scontrol show hostname {node_list} | head -n1').strip()
            os.environ['MASTER_ADDR'] = addr or 'localhost'
        os.environ.setdefault('MASTER_PORT', '29500')
    elif launcher == 'mpi':
        os.environ['RANK'] = str(_env_int('OMPI_COMM_WORLD_RANK'))
        os.environ['WORLD_SIZE'] = str(_env_int('OMPI_COMM_WORLD_SIZE'))
        os.environ['LOCAL_RANK'] = os.environ.get(
            'OMPI_COMM_WORLD_LOCAL_RANK', '0')
        os.environ.setdefault('MASTER_ADDR', 'localhost')
        os.environ.setdefault('MASTER_PORT', '29500')
    else:
        raise ValueError(f'unknown launcher {launcher!r}; use one of none, '
                         'pytorch, slurm, mpi')


def setup_cpu_distributed(cfg, launcher: str) -> bool:
    """Prepare gloo distributed training when CUDA is unavailable.

    Args:
        cfg (mmengine.Config): The training/testing config. Its
            ``model_wrapper_cfg`` gets ``device_ids=None`` and its
            ``env_cfg.dist_cfg.timeout`` (seconds) is used for the process
            group, so that a job whose peer died fails instead of hanging.
        launcher (str): ``'none'``, ``'pytorch'``, ``'slurm'`` or ``'mpi'``.

    Returns:
        bool: True if a gloo process group was initialised here.
    """
    if launcher == 'none' or torch.cuda.is_available():
        return False
    if torch_dist.is_available() and torch_dist.is_initialized():
        return False
    _rendezvous_env(launcher)
    dist_cfg = (cfg.get('env_cfg') or {}).get('dist_cfg') or {}
    timeout = dist_cfg.get('timeout', DEFAULT_TIMEOUT_S)
    torch_dist.init_process_group(
        backend='gloo',
        init_method='env://',
        rank=int(os.environ['RANK']),
        world_size=int(os.environ['WORLD_SIZE']),
        timeout=datetime.timedelta(seconds=timeout))
    wrapper: Optional[dict] = cfg.get('model_wrapper_cfg')
    if wrapper is None:
        wrapper = dict(type='MMDistributedDataParallel')
    # The Runner's device_ids=[LOCAL_RANK] is only a default: the config's
    # key wins, and None is what DDP wants for CPU modules.
    wrapper['device_ids'] = None
    wrapper.setdefault('broadcast_buffers', False)
    cfg.model_wrapper_cfg = wrapper
    return True


def finish_distributed() -> None:
    """Wait for every rank, then tear the process group down.

    Without it, a rank that finishes first exits while its peers still hold
    gloo connections to it, and their process-group destructors can abort
    (SIGABRT) at interpreter exit, turning a finished job into a failed one.
    A tool calls :func:`exit_after_distributed` next.
    """
    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.barrier()
        torch_dist.destroy_process_group()
        global _torn_down
        _torn_down = True


# Set by finish_distributed once this process has torn a process group down.
_torn_down = False


def exit_after_distributed() -> None:
    """End a finished distributed process without finalising the interpreter.

    ``destroy_process_group`` does not stop gloo's worker threads (PyTorch
    2.13), and one of them can still be dropping the tensors of the last
    collectives when the interpreter finalises. Dropping a tensor that Python
    created needs the GIL, which a finalising interpreter no longer hands
    out: the thread exits inside a destructor and the process aborts with
    "terminate called without an active exception", after its work was done
    (CI's two-node test; 13 of 60 two-process DDP jobs squeezed onto one core,
    none of 60 with this call). So the process ends here with status 0,
    after doing what a normal exit does: non-daemon threads are joined,
    ``atexit`` functions run (logging flushes its handlers there) and the
    standard streams are flushed. Objects are not finalised: close files
    before this point.

    Does nothing unless :func:`finish_distributed` tore a process group down
    in this process, so single-process runs exit the usual way.
    """
    if not _torn_down:
        return
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed or broken: nothing to keep
            pass
    os._exit(0)
