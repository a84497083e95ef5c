"""A hook that kills one rank of a distributed test run (tests only)."""
import os
import signal

from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class KillRankHook(Hook):
    """SIGKILL the process of ``rank`` after training iteration ``after_iter``.

    Args:
        rank (int): Global rank to kill.
        after_iter (int): Iteration (1-based) after which it dies.
    """

    def __init__(self, rank: int = 1, after_iter: int = 1) -> None:
        self.rank = rank
        self.after_iter = after_iter

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        if get_rank() == self.rank and runner.iter + 1 >= self.after_iter:
            os.kill(os.getpid(), signal.SIGKILL)
