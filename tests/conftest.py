import os

import pytest
import torch

# Two cores, two xdist workers: one thread each avoids oversubscription.
torch.set_num_threads(int(os.environ.get('RES2NET_MM_TEST_THREADS', '1')))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
