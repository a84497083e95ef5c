"""Behaviour of the Res2Net backbone (small widths; every code path)."""
import copy

import pytest
import torch
from torch import nn

from res2net_mm import Res2Net
from res2net_mm.models import Bottle2neck

from .utils import TINY, assert_close, batchnorms, randomize


def tiny(**kwargs):
    cfg = dict(TINY)
    cfg.update(kwargs)
    return Res2Net(**cfg)


@pytest.mark.parametrize('size', [224, 225, 97, 31])
@pytest.mark.parametrize('v1b', [False, True])
def test_stage_shapes(size, v1b):
    model = Res2Net(depth=50, out_indices=(0, 1, 2, 3), deep_stem=v1b,
                    avg_down=v1b).eval()
    with torch.no_grad():
        outs = model(torch.rand(1, 3, size, size))
    # conv/2 then maxpool/2, then /1, /2, /2, /2 (ceil at odd sizes)
    expected = [-(-size // 2)]
    expected.append(-(-expected[0] // 2))
    for stride in (2, 2, 2):
        expected.append(-(-expected[-1] // stride))
    assert [o.shape[1] for o in outs] == [256, 512, 1024, 2048]
    assert [o.shape[2] for o in outs] == expected[1:]
    assert [o.shape[3] for o in outs] == expected[1:]
    assert model.out_channels == [256, 512, 1024, 2048]


def test_out_indices_select_and_negative():
    model = tiny(out_indices=(1, -1)).eval()
    outs = model(torch.rand(1, 3, 64, 64))
    assert model.out_indices == (1, 3)
    assert [o.shape[1] for o in outs] == [128, 512]


@pytest.mark.parametrize('strides,dilations,stride', [
    ((1, 2, 1, 1), (1, 1, 2, 4), 8),
    ((1, 2, 2, 1), (1, 1, 1, 2), 16),
])
def test_dilated_output_stride(strides, dilations, stride):
    model = tiny(strides=strides, dilations=dilations,
                 out_indices=(0, 1, 2, 3)).eval()
    outs = model(torch.rand(1, 3, 128, 128))
    assert outs[-1].shape[-1] == 128 // stride
    assert outs[0].shape[-1] == 32
    layer4 = model.layer4[0]
    assert layer4.convs[0].dilation == (dilations[3], dilations[3])
    # official semantics: the stride-1 stage block still pools its last split
    assert layer4.pool is not None and layer4.pool.stride == 1


@pytest.mark.parametrize('frozen', [0, 1, 2, 4])
def test_frozen_stages(frozen):
    model = tiny(frozen_stages=frozen)
    model.train()
    frozen_modules = [model.conv1, model.norm1] + [
        getattr(model, f'layer{i}') for i in range(1, frozen + 1)]
    for module in frozen_modules:
        assert all(not p.requires_grad for p in module.parameters())
        assert all(not m.training for m in module.modules())
    for i in range(frozen + 1, 5):
        layer = getattr(model, f'layer{i}')
        assert all(p.requires_grad for p in layer.parameters())
        assert all(m.training for m in layer.modules())
    # BN statistics of frozen stages do not move in a training forward pass
    before = copy.deepcopy(model.state_dict())
    model(torch.rand(2, 3, 64, 64))
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    prefixes = ['conv1', 'bn1'] + [f'layer{i}.' for i in range(1, frozen + 1)]
    assert not [k for k in changed if k.startswith(tuple(prefixes))]
    if frozen < 4:
        assert changed


def test_frozen_stages_no_grad():
    model = tiny(frozen_stages=2)
    model(torch.rand(2, 3, 64, 64))[-1].sum().backward()
    assert model.layer2[0].conv1.weight.grad is None
    assert model.layer3[0].conv1.weight.grad is not None


def test_norm_eval():
    model = tiny(norm_eval=True)
    model.train()
    assert all(not bn.training for bn in batchnorms(model))
    assert model.layer1[0].conv1.weight.requires_grad  # still trainable
    stats = [bn.running_mean.clone() for bn in batchnorms(model)]
    model(torch.rand(2, 3, 64, 64))
    assert all(torch.equal(s, bn.running_mean)
               for s, bn in zip(stats, batchnorms(model)))
    model = tiny(norm_eval=False).train()
    assert all(bn.training for bn in batchnorms(model))


def test_fast_path_argument_reaches_every_block():
    blocks = [m for m in tiny(fast_path=False).modules()
              if isinstance(m, Bottle2neck)]
    assert blocks and not any(b.fast_path for b in blocks)
    assert all(b.fast_path for b in tiny().modules()
               if isinstance(b, Bottle2neck))


def test_with_cp_same_outputs_and_grads():
    ref = randomize(tiny(out_indices=(0, 1, 2, 3)))
    ckp = tiny(out_indices=(0, 1, 2, 3), with_cp=True)
    ckp.load_state_dict(ref.state_dict())
    x = torch.rand(2, 3, 64, 64)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    out1, out2 = ref(x1), ckp(x2)
    for a, b in zip(out1, out2):
        assert torch.equal(a, b)
    sum(o.sum() for o in out1).backward()
    sum(o.sum() for o in out2).backward()
    for (n, p1), p2 in zip(ref.named_parameters(), ckp.parameters()):
        assert_close(p2.grad, p1.grad, rtol=1e-5)
    assert_close(x2.grad, x1.grad, rtol=1e-5)
    assert all(b.with_cp for b in ckp.modules() if isinstance(b, Bottle2neck))


def test_drop_path_trains_and_not_evals():
    model = randomize(tiny(drop_path_rate=0.5))
    rates = [b.drop_path.drop_prob for b in model.modules()
             if isinstance(b, Bottle2neck) and hasattr(b.drop_path, 'drop_prob')]
    # linear from 0 (first block, so an nn.Identity) to 0.5 at the last block
    assert len(rates) == 7 and rates[-1] == pytest.approx(0.5)
    ref = randomize(tiny())
    x = torch.rand(4, 3, 64, 64)
    model.eval(), ref.eval()
    assert torch.equal(model(x)[0], ref(x)[0])  # eval: identical to no drop
    model.train()
    torch.manual_seed(1)
    a = model(x)[0]
    torch.manual_seed(2)
    b = model(x)[0]
    assert not torch.allclose(a, b)  # different paths dropped


def test_zero_init_residual_zeroes_every_branch():
    model = tiny(out_indices=(0, 1, 2, 3))
    model.init_weights()
    outs = []
    hooks = [b.norm3.register_forward_hook(lambda m, i, o: outs.append(o))
             for b in model.modules() if isinstance(b, Bottle2neck)]
    model(torch.rand(2, 3, 64, 64))
    for h in hooks:
        h.remove()
    assert len(outs) == 8
    assert all(torch.count_nonzero(o) == 0 for o in outs)
    # without it the branches are live
    model = tiny(zero_init_residual=False)
    model.init_weights()
    assert all(b.norm3.weight.abs().sum() > 0 for b in model.modules()
               if isinstance(b, Bottle2neck))


def test_kaiming_init():
    model = Res2Net(depth=50)
    conv = model.layer4[0].conv1  # 1x1, 1024 -> 832 * ... fan_out = out_ch
    torch.nn.init.constant_(conv.weight, 0.)
    model.init_weights()
    expected_std = (2. / conv.weight.shape[0])**0.5  # fan_out, ReLU gain
    assert conv.weight.std().item() == pytest.approx(expected_std, rel=0.05)
    assert all(torch.all(bn.weight == 1) or torch.all(bn.weight == 0)
               for bn in batchnorms(model))


@pytest.mark.parametrize('position', ['after_conv1', 'after_conv2',
                                      'after_conv3'])
def test_plugins_every_position(position):
    plugins = [
        dict(cfg=dict(type='ContextBlock', ratio=1. / 4), position=position,
             stages=(False, True, True, True)),
        dict(cfg=dict(type='NonLocal2d', reduction=2), position=position,
             stages=(False, False, True, False)),
    ]
    model = tiny(plugins=plugins)
    block = model.layer3[0]
    names = block.plugin_names[position]
    assert len(names) == 2
    expected = block.out_channels if position == 'after_conv3' \
        else block.width * block.scales
    assert getattr(block, names[0]).in_channels == expected
    assert not model.layer1[0].plugin_names[position]
    out = model(torch.rand(2, 3, 64, 64))[-1]
    out.sum().backward()
    assert getattr(block, names[0]).channel_add_conv[0].weight.grad is not None


@pytest.mark.parametrize('dcn_type', ['DCN', 'DCNv2'])
def test_dcn_forward_backward(dcn_type):
    model = tiny(dcn=dict(type=dcn_type, deform_groups=1,
                          fallback_on_stride=False),
                 stage_with_dcn=(False, True, True, True))
    from mmcv.ops import DeformConv2dPack, ModulatedDeformConv2dPack
    kind = DeformConv2dPack if dcn_type == 'DCN' \
        else ModulatedDeformConv2dPack
    assert isinstance(model.layer2[0].convs[0], kind)
    assert isinstance(model.layer1[0].convs[0], nn.Conv2d)
    model.layer2[0].convs[0].conv_offset.weight.data.normal_()
    model.init_weights()
    # Kaiming init must leave the offsets at zero: a DCN starts as a conv
    offsets = [m.conv_offset for m in model.modules()
               if hasattr(m, 'conv_offset')]
    assert len(offsets) == 3 * 6  # (scales - 1) convs in 6 blocks (depth 26)
    assert all(torch.count_nonzero(o.weight) == 0 for o in offsets)
    # mmcv's CPU deformable conv needs maps at least as large as the kernel
    out = model(torch.rand(2, 3, 128, 128))[-1]
    out.sum().backward()
    assert model.layer2[0].convs[0].weight.grad is not None


def test_dcn_fallback_on_stride():
    model = tiny(dcn=dict(type='DCN', deform_groups=1, fallback_on_stride=True),
                 stage_with_dcn=(False, True, True, True))
    from mmcv.ops import DeformConv2dPack
    assert not isinstance(model.layer2[0].convs[0], DeformConv2dPack)
    assert isinstance(model.layer2[1].convs[0], DeformConv2dPack)


def test_se_module():
    model = tiny(se_ratio=4)
    block = model.layer1[0]
    assert block.se is not None and block.se.fc1.out_channels == 64 // 4
    model(torch.rand(1, 3, 64, 64))[-1].sum().backward()
    assert block.se.fc1.weight.grad is not None


def test_groups_make_res2next():
    model = tiny(groups=4, base_width=2)
    block = model.layer1[0]
    # width = floor(planes * base_width / base_channels) * groups
    assert block.width == 2 * 4
    assert block.convs[0].groups == 4
    assert model.layer2[0].width == 4 * 4
    model(torch.rand(1, 3, 64, 64))


def test_gn_norm_cfg():
    model = tiny(norm_cfg=dict(type='GN', num_groups=4, requires_grad=True))
    assert isinstance(model.layer1[0].norm1, nn.GroupNorm)
    assert model.layer1[0].norm1_name == 'gn1'
    model(torch.rand(1, 3, 64, 64))


def test_arch_sets_defaults_and_explicit_args_win():
    model = Res2Net(arch='res2net50_v1b_26w_4s', depth=26)
    assert model.depth == 26 and model.deep_stem and model.avg_down
    assert isinstance(model.conv1, nn.Sequential)
    assert model.base_width == 26 and model.scales == 4


@pytest.mark.parametrize('kwargs,match', [
    (dict(depth=34), r'depth.*\[26, 50, 101, 152, 200\]'),
    (dict(scales=1), 'scales must be an integer >= 2'),
    (dict(out_indices=(4, )), 'out_indices.*0 to 3'),
    (dict(out_indices=()), 'out_indices'),
    (dict(frozen_stages=5), 'frozen_stages must be -1.*4'),
    (dict(stage_pool='never'), "stage_pool.*'always', 'strided'"),
    (dict(deep_stem='deep'), 'deep_stem must be True'),
    (dict(num_stages=5), 'num_stages must be 1 to 4'),
    (dict(drop_path_rate=1.0), 'drop_path_rate'),
    (dict(arch='res2net99'), 'unknown Res2Net variant.*res2net50_26w_4s'),
    (dict(arch='res2net_dla60'), "'res2net_dla60' is a Res2NetDLA variant"),
    (dict(plugins=[dict(cfg=dict(type='ContextBlock', ratio=0.25),
                        position='after_conv4')]),
     "plugin position.*'after_conv1', 'after_conv2', 'after_conv3'"),
    (dict(plugins=[dict(cfg=dict(type='ContextBlock', ratio=0.25),
                        position='after_conv1', stages=(True, ))]),
     'plugin stages needs 4 entries'),
    (dict(strides=(1, 2)), 'strides and dilations need 4 entries'),
])
def test_bad_arguments_name_the_problem(kwargs, match):
    with pytest.raises((ValueError, KeyError, IndexError, TypeError),
                       match=match):
        tiny(**kwargs)
