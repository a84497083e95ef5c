import os

import pytest
import torch

from res2net_mm.datasets import prepare_digits

# Two cores, two xdist workers: one thread each avoids oversubscription.
torch.set_num_threads(int(os.environ.get('RES2NET_MM_TEST_THREADS', '1')))


@pytest.fixture(scope='session')
def digits(tmp_path_factory):
    """The digits data set as an ImageNet-style folder, written once per
    test process and shared by the tests that train the demo classifier."""
    root = str(tmp_path_factory.mktemp('data') / 'digits')
    prepare_digits(root)
    return root


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def nchw_like_references(monkeypatch):
    """Run res2net_mm's backbones in NCHW, the layout the reference
    implementations compute in, so that a comparison with them sees the same
    oneDNN kernels. The automatic channels_last switch changes float rounding
    only (about 1e-6); tests/models/test_layout.py tests it on its own."""
    from res2net_mm.models.base import FreezableBackbone
    monkeypatch.setattr(FreezableBackbone, '_use_channels_last',
                        lambda self, x: False)
