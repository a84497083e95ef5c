"""The memory format a backbone computes in (``FreezableBackbone``): on CPU the
default is channels_last whatever the input's layout, with the NCHW model's
values and the outputs in the input's layout."""
import copy

import pytest
import torch

from res2net_mm import Res2Net
from res2net_mm.models.blres2net import BLRes2Net
from res2net_mm.models.dla import Res2NetDLA

from .test_fast_paths import VARIANTS, assert_same_state, tiny, train_steps
from .utils import assert_close, randomize

# name -> (builder taking channels_last, the module that sees the stem's output)
BACKBONES = {
    'res2net_v1': (lambda cl: tiny(channels_last=cl), 'layer1'),
    'res2net_v1b': (lambda cl: tiny(channels_last=cl, **VARIANTS['v1b']),
                    'layer1'),
    'dla': (lambda cl: Res2NetDLA(out_indices=range(6), channels_last=cl),
            'level0'),
    'blres2net': (lambda cl: BLRes2Net(out_indices=(0, 1, 2, 3), base_width=4,
                                       channels_last=cl), 'layer1'),
}


def first_stage_layouts(model, name):
    """Records, per forward, whether the first stage saw channels_last."""
    seen = []
    getattr(model, name).register_forward_pre_hook(
        lambda _, args: seen.append(
            args[0].is_contiguous(memory_format=torch.channels_last)))
    return seen


def test_automatic_choice():
    """On CPU the default computes in channels_last; not where exactness with
    per-split implementations was asked for (fast_path=False), with plugins
    or deformable convs from other libraries, off the CPU, or while tracing;
    True and False force it."""
    x = torch.randn(1, 3, 32, 32)
    auto = tiny(channels_last=None)
    assert auto._use_channels_last(x)
    assert not auto._use_channels_last(x.to('meta'))
    assert not tiny(channels_last=None, fast_path=False)._use_channels_last(x)
    plugin = dict(cfg=dict(type='ContextBlock', ratio=1. / 4),
                  position='after_conv3')
    assert not tiny(channels_last=None,
                    plugins=[plugin])._use_channels_last(x)
    dcn = tiny(channels_last=None, dcn=dict(type='DCN', deform_groups=1),
               stage_with_dcn=(False, True, False, False))
    assert not dcn._use_channels_last(x)
    assert tiny(channels_last=True)._use_channels_last(x.to('meta'))
    assert not tiny(channels_last=False)._use_channels_last(x)
    # the default of every backbone
    assert Res2Net()._use_channels_last(x)
    assert Res2NetDLA()._use_channels_last(x)
    assert BLRes2Net(base_width=4)._use_channels_last(x)
    seen = first_stage_layouts(auto, 'layer1')
    traced = torch.jit.trace(auto.eval(), x, check_trace=False)
    assert seen == [False]  # traced graphs keep the input's layout
    traced(x)
    for cls in (Res2Net, Res2NetDLA, BLRes2Net):
        with pytest.raises(TypeError, match='channels_last must be None'):
            cls(channels_last='auto')


@pytest.mark.parametrize('backbone', sorted(BACKBONES))
def test_automatic_channels_last_exact(backbone):
    TOL = 1e-7
    """Automatic channels_last computes the NCHW model's function: in float64
    (where the layouts' accumulation orders cannot hide a wrong value) two
    training steps give the same outputs, input grads, weights and BN
    statistics, and the outputs come back in the input's memory format.

    1e-7: float64 rounding, amplified by training-mode BN over batch 2 at
    small spatial sizes, stays below it (1e-9 and less here); a wrong layout
    gives O(1) differences."""
    build, first = BACKBONES[backbone]
    nchw = randomize(build(False)).double()
    auto = copy.deepcopy(nchw)
    auto.channels_last = None
    seen = first_stage_layouts(auto, first)
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    out_a, grad_a = train_steps(auto.train(), [x])
    out_n, grad_n = train_steps(nchw.train(), [x])
    assert seen == [True]
    for a, b in zip(out_a[0], out_n[0], strict=True):
        assert a.is_contiguous()  # NCHW in, NCHW out
        assert_close(a, b, TOL)
    assert grad_a[0].is_contiguous()
    assert_close(grad_a[0], grad_n[0], TOL)
    assert_same_state(auto, nchw, TOL)
    # a channels_last input stays channels_last, without copies back
    x_cl = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        outs = auto.eval()(x_cl)
        assert seen == [True, True]
        for a, b in zip(outs, nchw.eval()(x), strict=True):
            assert a.is_contiguous(memory_format=torch.channels_last)
            assert_close(a, b, TOL)
    # float32 eval: the same up to rounding
    nchw32 = randomize(build(False)).eval()
    auto32 = copy.deepcopy(nchw32)
    auto32.channels_last = None
    with torch.no_grad():
        for a, b in zip(auto32(x.float()), nchw32(x.float()), strict=True):
            assert_close(a, b, 1e-5)


# The weights' layout. DDP builds its gradient buckets from the parameters'
# strides when it wraps the model and copies every gradient whose strides
# differ ("Grad strides do not match bucket view strides"); a 1x1 conv
# computing in channels_last returns its weight's gradient with channels_last
# strides, so its weight must have them too.
CL, NCHW = torch.channels_last, torch.contiguous_format


def strides(shape, memory_format):
    return torch.empty(shape, memory_format=memory_format).stride()


def assert_weights(model, one_by_one):
    """The weights whose NCHW and channels_last strides differ only in size-1
    dimensions (the 1x1 convs) have ``one_by_one``'s strides; the others are
    NCHW (as built)."""
    either = 0
    for name, p in model.named_parameters():
        if p.dim() != 4:
            continue
        if p.is_contiguous() and p.is_contiguous(memory_format=CL):
            either += 1
            assert p.stride() == strides(p.shape, one_by_one), name
        else:
            assert p.stride() == strides(p.shape, NCHW), name
    assert either, 'no 1x1 conv weight found'


@pytest.mark.parametrize('backbone', sorted(BACKBONES))
def test_weights_follow_the_layout_choice(backbone):
    """Built, moved or re-set, the 1x1 conv weights take the strides of the
    layout the backbone computes in: channels_last for the automatic choice on
    CPU and for True on any device, NCHW for False and for the automatic
    choice off the CPU (the meta device stands for any other device here)."""
    build, _ = BACKBONES[backbone]
    auto = build(None)
    assert_weights(auto, CL)
    assert_weights(build(True), CL)
    assert_weights(build(False), NCHW)
    auto.channels_last = False
    assert_weights(auto, NCHW)
    auto.channels_last = None
    assert_weights(auto, CL)
    assert_weights(auto.double(), CL)
    assert_weights(auto.to('meta'), NCHW)
    assert_weights(auto.to_empty(device='cpu'), CL)
    assert_weights(build(True).to('meta'), CL)


def test_weights_layout_where_auto_is_off_or_converted():
    """Where the automatic choice stays NCHW (``fast_path=False``, for
    bit-identity with per-split implementations) the weights stay NCHW; a
    model converted with ``to(memory_format=channels_last)`` stays converted
    where the backbone does not compute in channels_last on its own (off the
    CPU, False), and on CPU the automatic choice keeps its 1x1 weights
    channels_last whatever a conversion asks (it computes in channels_last
    there)."""
    assert_weights(tiny(channels_last=None, fast_path=False), NCHW)
    for model in (tiny(channels_last=None).to('meta', memory_format=CL),
                  tiny(channels_last=False).to(memory_format=CL)):
        for name, p in model.named_parameters():
            if p.dim() == 4:
                assert p.stride() == strides(p.shape, CL), name
    assert_weights(tiny(channels_last=None).to(memory_format=NCHW), CL)


@pytest.mark.parametrize('backbone', sorted(BACKBONES))
@pytest.mark.parametrize('channels_last', [None, True, False])
def test_gradients_have_their_parameters_strides(backbone, channels_last):
    """What DDP compares: after a float32 training step on CPU every
    gradient has exactly its parameter's strides (NCHW inputs, as a data
    loader gives them). Batch 16: on one thread PyTorch leaves smaller
    batches of 1x1 convs to its own kernels instead of oneDNN's."""
    build, _ = BACKBONES[backbone]
    model = build(channels_last).train()
    sum(o.sum() for o in model(torch.randn(16, 3, 32, 32))).backward()
    grads = [(n, p) for n, p in model.named_parameters() if p.grad is not None]
    assert any(p.dim() == 4 for _, p in grads)
    bad = [(n, p.stride(), p.grad.stride()) for n, p in grads
           if p.grad.stride() != p.stride()]
    assert not bad, bad


@pytest.mark.parametrize('backbone', sorted(BACKBONES))
def test_channels_last_weights_compute_the_nchw_function(backbone):
    """The automatic model as built (channels_last 1x1 weights) and its copy
    set to NCHW: in float64 the same outputs, input grads, weight grads,
    updated weights and BN statistics after two training steps, within the
    tolerance of test_automatic_channels_last_exact (1e-7)."""
    TOL = 1e-7
    build, _ = BACKBONES[backbone]
    auto = randomize(build(None)).double()
    nchw = copy.deepcopy(auto)
    nchw.channels_last = False
    assert_weights(auto, CL)
    assert_weights(nchw, NCHW)
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    out_a, grad_a = train_steps(auto.train(), [x, x.flip(-1)])
    out_n, grad_n = train_steps(nchw.train(), [x, x.flip(-1)])
    for step_a, step_n in zip(out_a, out_n, strict=True):
        for a, b in zip(step_a, step_n, strict=True):
            assert a.is_contiguous()
            assert_close(a, b, TOL)
    for a, b in zip(grad_a, grad_n, strict=True):
        assert_close(a, b, TOL)
    for a, b in zip(auto.parameters(), nchw.parameters(), strict=True):
        if a.grad is not None:
            assert_close(a.grad, b.grad, TOL)
    assert_same_state(auto, nchw, TOL)


def test_traced_model_gives_the_inputs_layout_back():
    """Tracing leaves an NCHW input NCHW, and the channels_last 1x1 weights
    make their convs compute in channels_last: the traced model's outputs
    still come back NCHW, with the eager model's values."""
    auto = randomize(tiny(channels_last=None)).eval()
    x = torch.randn(1, 3, 32, 32)
    traced = torch.jit.trace(auto, x, check_trace=False)
    with torch.no_grad():
        for a, b in zip(traced(x), auto(x), strict=True):
            assert a.is_contiguous()
            assert_close(a, b, 1e-5)


def test_state_dict_and_files_do_not_change(tmp_path):
    """Only strides of size-1 dimensions differ: the state dict has the NCHW
    model's names and values, every tensor is contiguous (numpy and
    safetensors writers need that), the MindSpore file is byte for byte the
    NCHW model's and the safetensors file holds the same tensors (its header
    order varies from one write to the next), loading a checkpoint keeps the
    loading model's layout, and a seed initialises the same weights."""
    from safetensors.torch import load_file

    from res2net_mm.converters import save_checkpoint_as

    auto = randomize(tiny(channels_last=None))
    nchw = copy.deepcopy(auto)
    nchw.channels_last = False
    sa, sn = auto.state_dict(), nchw.state_dict()
    assert list(sa) == list(sn)
    assert any(sa[k].stride() != sn[k].stride() for k in sa)
    for k in sa:
        assert torch.equal(sa[k], sn[k]), k
        assert sa[k].is_contiguous(), k
        assert sa[k].numpy().flags['C_CONTIGUOUS'], k
    files = {(name, fmt): save_checkpoint_as(s, tmp_path / f'{name}.{fmt}',
                                             fmt)[0]
             for name, s in (('auto', sa), ('nchw', sn))
             for fmt in ('safetensors', 'mindcv')}
    with open(files['auto', 'mindcv'], 'rb') as a, \
            open(files['nchw', 'mindcv'], 'rb') as b:
        assert a.read() == b.read()
    ta, tn = (load_file(files[name, 'safetensors']) for name in ('auto',
                                                                 'nchw'))
    assert sorted(ta) == sorted(tn) == sorted(sa)
    for k in ta:
        assert torch.equal(ta[k], tn[k]), k
    loaded = tiny(channels_last=None)
    loaded.load_state_dict(sn)
    assert_weights(loaded, CL)
    for k, v in loaded.state_dict().items():
        assert torch.equal(v, sn[k]), k
    # the same seed initialises the same weights in either layout
    inits = []
    for channels_last in (None, False):
        torch.manual_seed(0)
        model = tiny(channels_last=channels_last)
        model.init_weights()
        inits.append(model.state_dict())
    for k in inits[0]:
        assert torch.equal(inits[0][k], inits[1][k]), k
