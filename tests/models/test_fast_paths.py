"""The block's fast paths compute what the plain per-split path computes.

Reference = the same weights with ``fast_path=False`` on every block (one conv
and one BN per split, as the official code and timm). Each test also checks
that the fast path was really taken, so it cannot pass by falling back.
"""
import copy

import pytest
import torch
from torch import nn

from res2net_mm import Res2Net
from res2net_mm.models import Bottle2neck

from .utils import TINY, assert_close, batchnorms, randomize

VARIANTS = {
    'v1': dict(),
    'v1b': dict(deep_stem=True, avg_down=True),
    'res2next': dict(groups=2, scales=3),
    'strided_pool_dilated': dict(stage_pool='strided', strides=(1, 2, 2, 1),
                                 dilations=(1, 1, 1, 2)),
}


def tiny(**kwargs):
    """A small Res2Net computing in its input's layout: each test compares one
    fast path at a time (the automatic channels_last switch has its own)."""
    cfg = dict(TINY, out_indices=(0, 1, 2, 3), channels_last=False)
    cfg.update(kwargs)
    return Res2Net(**cfg)


def blocks(model):
    return [m for m in model.modules() if isinstance(m, Bottle2neck)]


def plain_copy(model):
    ref = copy.deepcopy(model)
    for b in blocks(ref):
        b.fast_path = False
    return ref


def conv_calls(model, x, train=False):
    """Number of conv kernels one forward runs (profiler events)."""
    model.train(train)
    with torch.profiler.profile() as prof, torch.no_grad():
        model(x)
    return sum(e.name == 'aten::convolution' for e in prof.events())


def saved_convs(model):
    """Convs the grouped path saves: ``scales - 2`` per stage block."""
    return sum(b.scales - 2 for b in blocks(model) if b.stage_block)


def assert_grouped(fast, ref, x):
    """The fast model runs exactly ``saved_convs`` fewer conv kernels, in
    training and in eval mode."""
    assert saved_convs(fast) > 0
    for train in (True, False):
        assert conv_calls(ref, x, train) - conv_calls(fast, x, train) == \
            saved_convs(fast)


def assert_same_state(a, b, rtol=1e-6):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert sa[k].shape == sb[k].shape, k
        if sa[k].is_floating_point():
            assert_close(sa[k], sb[k], rtol)
        else:
            assert torch.equal(sa[k], sb[k]), k


def train_steps(model, xs):
    """Two SGD steps; returns the outputs and the input grads."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    outs, grads = [], []
    for x in xs:
        x = x.clone().requires_grad_()
        out = model(x)
        opt.zero_grad()
        sum((o * torch.linspace(-1, 1, o.numel()).view_as(o)).sum()
            for o in out).backward()
        opt.step()
        outs.append([o.detach() for o in out])
        grads.append(x.grad)
    return outs, grads


@pytest.mark.parametrize('variant', sorted(VARIANTS))
def test_grouped_stage_convs_train_exact(variant):
    """Outputs, input grads, updated weights and BN statistics of two
    training steps equal the per-split path's."""
    fast = randomize(tiny(**VARIANTS[variant])).train()
    ref = plain_copy(fast)
    assert all(b._can_group_stage() for b in blocks(fast) if b.stage_block)
    xs = [torch.randn(2, 3, 48, 48) for _ in range(2)]
    assert_grouped(copy.deepcopy(fast), copy.deepcopy(ref), xs[0])
    counts = [int(bn.num_batches_tracked) for bn in batchnorms(fast)]
    out_f, grad_f = train_steps(fast, xs)
    out_r, grad_r = train_steps(ref, xs)
    # Step 1 on identical weights: float reassociation only. Step 2 runs on
    # weights updated with those (1e-7-level) different grads, through BN on
    # 2-sample batches, which amplifies it a little: 5e-5.
    for step, rtol in enumerate((1e-5, 5e-5)):
        for a, b in zip(out_f[step], out_r[step]):
            assert_close(a, b, rtol)
        assert_close(grad_f[step], grad_r[step], rtol)
    # Weights after two momentum steps (so the grads matched) and every BN's
    # running mean / var / num_batches_tracked, per split.
    assert_same_state(fast, ref, 5e-5)
    assert [int(bn.num_batches_tracked) for bn in batchnorms(fast)] == \
        [c + 2 for c in counts]


@pytest.mark.parametrize('variant', sorted(VARIANTS))
def test_grouped_stage_convs_eval_exact(variant):
    fast = randomize(tiny(**VARIANTS[variant])).eval()
    ref = plain_copy(fast)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(fast(x), ref(x)):
            assert_close(a, b)


def test_state_dict_keeps_per_split_format():
    """Checkpoints of either path load into the other, strictly."""
    fast = randomize(tiny())
    keys = list(fast.state_dict())
    assert 'layer1.0.convs.2.weight' in keys
    assert 'layer1.0.bns.2.running_var' in keys
    assert not any('grouped' in k for k in keys)
    ref = tiny()
    for b in blocks(ref):
        b.fast_path = False
    ref.load_state_dict(fast.state_dict(), strict=True)
    fast2 = tiny()
    fast2.load_state_dict(ref.state_dict(), strict=True)
    assert_same_state(fast2, fast)
    block = fast.layer2[0]
    assert isinstance(block.convs[1], nn.Conv2d)
    assert isinstance(block.bns[1], nn.BatchNorm2d)


def test_frozen_and_norm_eval_train_exact():
    """Frozen stages and norm_eval (BN in eval mode while training)."""
    fast = randomize(tiny(frozen_stages=1, norm_eval=True)).train()
    ref = plain_copy(fast).train()
    xs = [torch.randn(2, 3, 32, 32)]
    out_f, grad_f = train_steps(fast, xs)
    out_r, grad_r = train_steps(ref, xs)
    for a, b in zip(out_f[0], out_r[0]):
        assert_close(a, b, 1e-5)
    assert_close(grad_f[0], grad_r[0], 1e-5)
    assert_same_state(fast, ref, 1e-5)


@pytest.mark.parametrize('change', ['syncbn', 'momentum_none', 'gn'])
def test_falls_back_where_grouping_is_not_exact(change):
    """SyncBN (reduced across processes by its own forward), cumulative
    averaging (momentum=None, per-BN counters) and GN (groups span splits)
    take the per-split path and still compute the right thing."""
    if change == 'gn':
        model = randomize(tiny(norm_cfg=dict(type='GN', num_groups=2)))
    else:
        model = randomize(tiny())
    if change == 'syncbn':
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if change == 'momentum_none':
        for bn in batchnorms(model):
            bn.momentum = None
    stage_blocks = [b for b in blocks(model) if b.stage_block]
    assert stage_blocks and not any(b._can_group_stage()
                                    for b in stage_blocks)
    if change == 'syncbn':
        return  # SyncBN needs a process group to run in training mode
    ref = plain_copy(model)
    x = torch.randn(2, 3, 32, 32)
    assert conv_calls(model, x, True) == conv_calls(ref, x, True)
    out_f, _ = train_steps(model, [x])
    out_r, _ = train_steps(ref, [x])
    for a, b in zip(out_f[0], out_r[0]):
        assert_close(a, b, 1e-5)
    assert_same_state(model, ref, 1e-5)


def test_with_cp_and_drop_path_use_the_grouped_path():
    fast = randomize(tiny(with_cp=True, drop_path_rate=0.2)).train()
    ref = plain_copy(fast)
    assert_grouped(copy.deepcopy(fast), copy.deepcopy(ref),
                   torch.randn(2, 3, 32, 32))
    fast.train(), ref.train()
    torch.manual_seed(1)
    out_f, grad_f = train_steps(fast, [torch.randn(2, 3, 32, 32)])
    torch.manual_seed(1)
    out_r, grad_r = train_steps(ref, [torch.randn(2, 3, 32, 32)])
    for a, b in zip(out_f[0], out_r[0]):
        assert_close(a, b, 1e-5)
    assert_close(grad_f[0], grad_r[0], 1e-5)


def test_forward_hooks_see_every_split():
    """Hook-based tools (MAC counters) see every split conv run: with hooks
    on them the block takes the per-split path."""
    from res2net_mm.utils import count_macs
    fast = tiny()
    ref = plain_copy(fast)
    assert count_macs(fast, (1, 3, 64, 64)) == count_macs(ref, (1, 3, 64, 64))
    block = fast.layer2[0]
    assert block._can_group_stage()
    handle = block.convs[1].register_forward_hook(lambda *_: None)
    assert not block._can_group_stage()
    handle.remove()
    assert block._can_group_stage()


@pytest.mark.parametrize('variant', ['v1', 'v1b'])
def test_channels_last_end_to_end(variant):
    """A channels_last model on a channels_last input: the fast path equals
    the per-split path in the same layout (train and eval), every output
    stays channels_last (no silent conversion back), and the values equal the
    NCHW model's up to oneDNN's layout-dependent accumulation order."""
    nchw = randomize(tiny(**VARIANTS[variant]))
    cl = copy.deepcopy(nchw).to(memory_format=torch.channels_last)
    ref = plain_copy(cl)
    x = torch.randn(2, 3, 48, 48)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    cl.eval(), ref.eval()
    with torch.no_grad():
        for a, b in zip(cl(x_cl), ref(x_cl)):
            assert a.is_contiguous(memory_format=torch.channels_last)
            assert_close(a, b, 1e-5)
    cl.train(), ref.train()
    out_c, grad_c = train_steps(cl, [x_cl])
    out_r, grad_r = train_steps(ref, [x_cl])
    out_n, grad_n = train_steps(nchw, [x])
    for a, b, c in zip(out_c[0], out_r[0], out_n[0]):
        assert a.is_contiguous(memory_format=torch.channels_last)
        assert_close(a, b, 1e-5)
        assert_close(a, c, 1e-4)
    assert grad_c[0].is_contiguous(memory_format=torch.channels_last)
    assert_close(grad_c[0], grad_r[0], 1e-5)
    assert_close(grad_c[0], grad_n[0], 1e-4)
    assert_same_state(cl, ref, 1e-5)


def _compiled_equal(model, x, train):
    """fullgraph=True raises on any graph break. Training goes through AOT
    autograd (the backward graph and the buffer mutations); eval only needs
    dynamo's graph capture."""
    ref = plain_copy(model)
    compiled = torch.compile(model, backend='aot_eager' if train else 'eager',
                             fullgraph=True)
    if train:
        out_c, grad_c = train_steps(compiled, [x])
        out_r, grad_r = train_steps(ref, [x])
        assert_close(grad_c[0], grad_r[0], 1e-5)
        assert_same_state(model, ref, 1e-5)
        return out_c[0], out_r[0]
    with torch.no_grad():
        return compiled(x), ref(x)


@pytest.mark.parametrize('train', [True, False], ids=['train', 'eval'])
def test_torch_compile_fullgraph(train):
    """No graph break (fullgraph=True) in training (BN statistics written
    back inside the graph) and eval, and the compiled model's values and
    BN statistics equal the eager per-split path's."""
    torch._dynamo.reset()
    model = randomize(tiny(depth=26, **VARIANTS['v1b'])).train(train)
    x = torch.randn(2, 3, 32, 32)
    out_c, out_r = _compiled_equal(model, x, train)
    for a, b in zip(out_c, out_r):
        assert_close(a, b, 1e-5)


def test_torch_compile_inductor_deploy():
    """The deployed model through inductor (the real compiler, fullgraph):
    the oneDNN eager kernels step aside, inductor fuses by itself."""
    from res2net_mm.deploy import fuse_res2net
    torch._dynamo.reset()
    model = randomize(tiny(num_stages=1, out_indices=(0, ))).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
        deployed = fuse_res2net(copy.deepcopy(model))
        compiled = torch.compile(deployed, fullgraph=True)
        for a, b in zip(compiled(x), expected):
            assert_close(a, b, 1e-5)


@pytest.mark.parametrize('cfg', [dict(), dict(se_ratio=4),
                                 dict(drop_path_rate=0.3)],
                         ids=['v1', 'se', 'drop_path'])
def test_in_place_residual_add_exact(cfg):
    """The residual is added into the branch's output where no hook or
    plugin can hold that tensor: the same bits as adding out of place."""
    fast = randomize(tiny(**cfg)).train()
    ref = copy.deepcopy(fast)
    for b in blocks(ref):
        b._may_add_in_place = lambda: False
    assert all(b._may_add_in_place() for b in blocks(fast))
    x = torch.randn(2, 3, 32, 32)
    torch.manual_seed(1)
    out_f, grad_f = train_steps(fast, [x])
    torch.manual_seed(1)
    out_r, grad_r = train_steps(ref, [x])
    for a, b in zip(out_f[0], out_r[0]):
        assert torch.equal(a, b)
    assert torch.equal(grad_f[0], grad_r[0])
    assert_same_state(fast, ref, 0)
    # what could see the tensor change keeps the out-of-place addition
    block = blocks(fast)[1]
    handle = block.norm3.register_forward_hook(lambda *_: None)
    assert not block._may_add_in_place()
    handle.remove()
    plugin = dict(cfg=dict(type='ContextBlock', ratio=1. / 4),
                  position='after_conv3')
    assert not blocks(tiny(plugins=[plugin]))[0]._may_add_in_place()
