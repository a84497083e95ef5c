"""ChainedSplits (memory-lean training of the chained split convs) computes
exactly what autograd computes op by op, and keeps less for backward.

The grouped stage path is switched off in both models here, so that every
difference could only come from ChainedSplits; it runs the same kernels, so
the results are compared bit for bit.
"""
import copy

import pytest
import torch

from res2net_mm.models import Bottle2neck

from .test_fast_paths import blocks, plain_copy, tiny, train_steps
from .utils import batchnorms, randomize

VARIANTS = {
    'v1': dict(),
    'v1b_frozen_norm_eval': dict(deep_stem=True, avg_down=True,
                                 frozen_stages=1, norm_eval=True),
    'res2next': dict(groups=2, scales=3),
    'dilated_scales6': dict(scales=6, strides=(1, 2, 2, 1),
                            dilations=(1, 1, 1, 2)),
}
FORMATS = {'nchw': torch.contiguous_format, 'cl': torch.channels_last}


def chain_only(model):
    """Switch the grouped stage path off (per instance), keep the chain."""
    for b in blocks(model):
        b._can_group_stage = lambda: False
    return model


def lean_blocks(model):
    return [b for b in blocks(model) if not b.stage_block]


def graph_nodes(out, name):
    """Autograd nodes of a type in the graph behind ``out``."""
    seen, stack, found = set(), [out.grad_fn], 0
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        found += type(fn).__name__ == name
        stack.extend(f for f, _ in fn.next_functions)
    return found


def assert_frozen_grads_equal(lean):
    """One backward of ``lean`` and of its per-split copy: parameters that
    do not train get no gradient, the others the same one, bit for bit."""
    ref = plain_copy(lean)
    x = torch.randn(2, 3, 32, 32)
    for model in (lean, ref):
        model(x)[-1].square().sum().backward()
    for (name, p), q in zip(lean.named_parameters(), ref.parameters()):
        assert (p.grad is None) == (q.grad is None) == (not p.requires_grad)
        if p.grad is not None:
            assert torch.equal(p.grad, q.grad), name


def assert_state_equal(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


@pytest.mark.parametrize('fmt', sorted(FORMATS))
@pytest.mark.parametrize('variant', sorted(VARIANTS))
def test_train_bit_exact(variant, fmt):
    """Two SGD steps: outputs, input grads, updated weights and every BN's
    running statistics and counter are bit-identical to op-by-op autograd."""
    mf = FORMATS[fmt]
    lean = chain_only(randomize(tiny(**VARIANTS[variant]))).to(
        memory_format=mf).train()
    ref = plain_copy(lean)
    x = torch.randn(2, 3, 40, 40).contiguous(memory_format=mf)
    out = lean(x.requires_grad_())[-1]
    assert graph_nodes(out, 'ChainedSplitsBackward') == len(
        lean_blocks(lean)) > 0
    # Both models have now made one training forward on x (BN statistics
    # updated once each); the state comparison at the end covers it too.
    assert graph_nodes(ref(x)[-1], 'ChainedSplitsBackward') == 0
    xs = [torch.randn(2, 3, 40, 40).contiguous(memory_format=mf)
          for _ in range(2)]
    out_l, grad_l = train_steps(lean, xs)
    out_r, grad_r = train_steps(ref, xs)
    for step in range(2):
        for a, b in zip(out_l[step], out_r[step]):
            assert torch.equal(a, b)
        assert torch.equal(grad_l[step], grad_r[step])
    assert_state_equal(lean, ref)


def test_frozen_weights_and_input_without_grad():
    """Parameters that do not train get no gradient, the others the same
    one; an input without grad is not differentiated."""
    lean = chain_only(randomize(tiny())).train()
    for b in lean_blocks(lean):
        b.convs[0].weight.requires_grad_(False)
        b.bns[-1].bias.requires_grad_(False)
    assert_frozen_grads_equal(lean)


def test_with_cp_takes_the_lean_path():
    lean = chain_only(randomize(tiny(with_cp=True))).train()
    ref = plain_copy(lean)
    xs = [torch.randn(2, 3, 32, 32)]
    calls = []
    original = Bottle2neck._can_chain_lean

    def spy(self, x):
        calls.append(original(self, x))
        return calls[-1]

    for b in lean_blocks(lean):
        b._can_chain_lean = spy.__get__(b)
    out_l, grad_l = train_steps(lean, xs)
    out_r, grad_r = train_steps(ref, xs)
    assert calls and all(calls)  # forward and the checkpoint's recompute
    assert torch.equal(grad_l[0], grad_r[0])
    assert_state_equal(lean, ref)


def saved_bytes(model, x):
    """Bytes of the distinct activation storages autograd keeps (not the
    parameters and buffers, which exist anyway)."""
    storages = {}
    model_tensors = {t.untyped_storage().data_ptr()
                     for t in [*model.parameters(), *model.buffers()]}

    def pack(t):
        s = t.untyped_storage()
        if s.data_ptr() not in model_tensors:
            storages[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x)
    return sum(storages.values())


@pytest.mark.parametrize('scales', [3, 4, 6])
def test_keeps_fewer_activations(scales):
    """Per non-stage block, autograd op by op keeps ``scales - 2`` conv
    inputs and ``scales - 1`` ReLU outputs more, all of one split's shape;
    nothing else changes."""
    lean = chain_only(tiny(scales=scales)).train()
    ref = plain_copy(lean)
    x = torch.randn(2, 3, 64, 64)
    shapes = {}

    def record(block, args):
        shapes[block] = args[0].shape

    for b in lean_blocks(lean):
        # Hooks on the block are fine: only hooks on its split layers make
        # it run op by op.
        b.register_forward_pre_hook(record)
    lean_saved = saved_bytes(lean, x)
    assert len(shapes) == len(lean_blocks(lean)) > 0
    expected = 0
    for b, shape in shapes.items():
        n, _, h, w = shape
        split = n * b.width * h * w * 4  # float32
        expected += (2 * b.scales - 3) * split
    assert saved_bytes(ref, x) - lean_saved == expected > 0


@pytest.mark.parametrize('case', ['no_grad', 'autocast', 'hook', 'momentum',
                                  'fast_path_off', 'eval_no_grad_params'])
def test_falls_back_to_autograd(case):
    """Where it could not reproduce autograd (autocast casts, hooks that
    expect every split to run, cumulative BN averaging) or has nothing to
    save, the block runs op by op."""
    model = chain_only(randomize(tiny())).train()
    block = lean_blocks(model)[0]
    x = torch.randn(2, block.in_channels, 8, 8, requires_grad=True)
    assert block._can_chain_lean(x)
    if case == 'no_grad':
        with torch.no_grad():
            assert not block._can_chain_lean(x)
        return
    if case == 'autocast':
        with torch.autocast('cpu', dtype=torch.bfloat16):
            assert not block._can_chain_lean(x)
            out = block(x)
        assert graph_nodes(out, 'ChainedSplitsBackward') == 0
        return
    if case == 'hook':
        block.bns[1].register_forward_hook(lambda *_: None)
    elif case == 'momentum':
        for bn in batchnorms(block):
            bn.momentum = None
    elif case == 'fast_path_off':
        block.fast_path = False
    elif case == 'eval_no_grad_params':
        block.requires_grad_(False)
        x = x.detach()
    assert not block._can_chain_lean(x)
    ref = copy.deepcopy(block)
    ref.fast_path = False
    assert torch.equal(block(x), ref(x))
