"""Res2Net takes the toolboxes' ResNet-family arguments, with their meaning.

The references are the installed classes themselves: their signatures (every
argument is either taken or refused with a reason), mmdet's and mmpretrain's
bottlenecks in caffe style (same weights, same outputs) and mmseg's
``ResLayer`` dilations (``contract_dilation``, ``multi_grid``) built from
mmseg's own configs.
"""
import inspect
import os.path as osp
import warnings

import pytest
import torch
from mmengine.config import Config

from res2net_mm import Res2Net
from res2net_mm.converters.keymaps import from_mmdet, from_mmpretrain
from res2net_mm.models import Bottle2neck
from res2net_mm.models.res2net import NOT_RES2NET_ARGS

from .utils import TINY, assert_close, randomize

pytestmark = pytest.mark.usefixtures('nchw_like_references')

# Small widths that mmdet's and mmpretrain's Res2Net build too (they have no
# depth 26): split width floor(16 * 4 / 16) = 4 in the first stage.
SMALL = dict(depth=50, base_channels=16, stem_channels=16, base_width=4,
             scales=4)


def _toolbox_classes():
    """The ResNet-family backbones whose configs may be swapped to Res2Net,
    and those whose extra arguments Res2Net refuses."""
    import mmdet.models.backbones as det
    import mmpretrain.models.backbones as pre
    import mmseg.models.backbones as seg
    taken = [det.ResNet, det.ResNetV1d, det.ResNeXt, det.Res2Net, seg.ResNet,
             seg.ResNetV1c, seg.ResNetV1d, seg.ResNeXt, pre.ResNet,
             pre.ResNetV1c, pre.ResNetV1d, pre.ResNeXt, pre.SEResNet,
             pre.SEResNeXt, pre.Res2Net, pre.ResNet_CIFAR]
    refused = [det.ResNeSt, det.TridentResNet, det.DetectoRS_ResNet,
               seg.ResNeSt, pre.ResNeSt]
    return taken, refused


def _init_args(cls):
    """Named ``__init__`` arguments of ``cls`` and the classes it passes
    ``**kwargs`` on to."""
    names = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get('__init__')
        if init is None or klass is torch.nn.Module:
            continue
        if klass.__module__.startswith(('mmengine', 'torch')):
            break
        for p in inspect.signature(init).parameters.values():
            if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) \
                    and p.name != 'self':
                names.add(p.name)
    return names


OURS = set(inspect.signature(Res2Net.__init__).parameters) - {'self', 'kwargs'}


def test_every_toolbox_resnet_argument_is_taken():
    taken, _ = _toolbox_classes()
    for cls in taken:
        missing = _init_args(cls) - OURS
        assert not missing, f'{cls.__module__}.{cls.__name__}: {missing}'


def test_refused_arguments_are_the_toolboxes_and_have_reasons():
    taken, refused = _toolbox_classes()
    extra = set().union(*(_init_args(c) for c in refused)) - OURS
    # every argument of ResNeSt / TridentNet / DetectoRS that Res2Net lacks
    # has a reason, and no reason is for a name that no toolbox uses
    assert extra == set(NOT_RES2NET_ARGS)
    assert not set(NOT_RES2NET_ARGS) & set().union(
        *(_init_args(c) for c in taken))


@pytest.mark.parametrize('name', sorted(NOT_RES2NET_ARGS))
def test_refused_argument_names_itself_and_why(name):
    with pytest.raises(TypeError) as e:
        Res2Net(**TINY, **{name: 1})
    assert f'Res2Net does not take {name}: ' in str(e.value)
    assert NOT_RES2NET_ARGS[name] in str(e.value)


def test_resnest_radix_reason():
    with pytest.raises(TypeError, match='radix is a ResNeSt argument.*'
                       'multi-scale split is set by scales'):
        Res2Net(**TINY, radix=2)


def test_unknown_argument_is_a_type_error_with_hints():
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) "
                       r"'scale' \(did you mean scales"):
        Res2Net(**TINY, scale=4)
    with pytest.raises(TypeError, match="'not_an_argument'; valid arguments: "
                       'arch, depth'):
        Res2Net(**TINY, not_an_argument=1)


@pytest.mark.parametrize('kwargs, match', [
    (dict(se_ratio=0), 'se_ratio must be None .* got 0'),
    (dict(se_ratio=-4), 'se_ratio must be None .* got -4'),
    (dict(in_channels=0), 'in_channels must be a positive integer, got 0'),
    (dict(stem_channels=0), 'stem_channels must be a positive integer'),
    (dict(expansion=0), 'expansion must be a positive integer, got 0'),
    (dict(style='Caffe'), r"style must be one of \('pytorch', 'caffe'\)"),
    (dict(multi_grid=(1, 2, 4)), 'multi_grid .* 2 positive integers at '
     r'depth 26, got \(1, 2, 4\)'),
    (dict(multi_grid=(1, 0)), 'multi_grid'),
    (dict(base_width=4, width_per_group=8), 'width_per_group is mmpretrain'),
])
def test_bad_values_are_refused(kwargs, match):
    cfg = {k: v for k, v in TINY.items() if k not in kwargs}
    with pytest.raises(ValueError, match=match):
        Res2Net(**cfg, **kwargs)


def test_contract_dilation_must_be_bool():
    with pytest.raises(TypeError, match='contract_dilation must be True'):
        Res2Net(**TINY, contract_dilation='yes')


def test_unknown_norm_type_is_named_with_the_valid_ones():
    with pytest.raises(KeyError) as e:
        Res2Net(**TINY, norm_cfg=dict(type='BatchNorm'))
    message = e.value.args[0]
    assert "unknown norm_cfg type 'BatchNorm'" in message
    for valid in ('BN', 'SyncBN', 'GN'):
        assert valid in message.split('MODELS: ')[1].split(', ')
    with pytest.raises(TypeError, match='norm_cfg must be a dict'):
        Res2Net(**TINY, norm_cfg='BN')


def test_dict_arch_is_refused():
    with pytest.raises(TypeError, match='arch names a Res2Net variant'):
        Res2Net(arch=dict(w0=24))


def test_stem_channels_none_is_base_channels_and_expansion():
    model = Res2Net(**dict(TINY, stem_channels=None), expansion=2,
                    out_indices=(0, 1, 2, 3)).eval()
    assert model.norm1.num_features == TINY['base_channels']
    assert model.out_channels == [32, 64, 128, 256]
    # the split width depends on the planes only, not on the expansion
    assert model.layer1[0].width == Res2Net(**TINY).layer1[0].width
    outs = model(torch.rand(1, 3, 32, 32))
    assert [o.shape[1] for o in outs] == model.out_channels


def _mmpretrain_pair(**kwargs):
    """mmpretrain's Res2Net with ``kwargs`` (random weights, eval) and ours
    with the same arguments and its weights."""
    from mmpretrain.models import Res2Net as PretrainRes2Net
    theirs = randomize(PretrainRes2Net(out_indices=(0, 1, 2, 3), **kwargs,
                                       **SMALL))
    theirs.eval()  # the toolboxes' train() returns None: no chaining
    ours = Res2Net(out_indices=(0, 1, 2, 3), deep_stem=True, avg_down=True,
                   **kwargs, **SMALL).eval()
    ours.load_state_dict(from_mmpretrain(theirs.state_dict()), strict=True)
    return ours, theirs


def _assert_same_outputs(ours, theirs):
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(ours(x), theirs(x), strict=True):
            assert_close(a, b, rtol=2e-6)


def test_mmpretrain_expansion_means_the_same():
    _assert_same_outputs(*_mmpretrain_pair(expansion=2))


def test_resnext_groups_and_width_per_group_give_res2next():
    # mmpretrain's ResNeXt names base_width width_per_group; either way the
    # 3x3 convs are grouped by the cardinality.
    a = Res2Net(**dict(TINY, base_width=None), groups=4, width_per_group=2)
    b = Res2Net(**dict(TINY, base_width=2), groups=4)
    assert a.base_width == b.base_width == 2
    conv = a.layer1[0].convs[0]
    assert conv.groups == 4 and conv.in_channels == 2 * 4
    assert a.state_dict().keys() == b.state_dict().keys()


# ---------------------------------------------------------------- caffe style

class _CaffeStyle:
    """Build a toolbox's own Res2Net with ``style='caffe'``.

    mmdet's ``Res2Net.__init__`` passes ``style='pytorch'`` to ``ResNet``
    whatever it is given; calling ``ResNet.__init__`` directly with the
    attributes that ``Res2Net.__init__`` sets (``scales``, ``base_width``)
    builds mmdet's own ``Bottle2neck`` blocks in caffe style, where their
    code supports it.
    """

    @staticmethod
    def mmdet(**kwargs):
        from mmdet.models.backbones.res2net import Res2Net as DetRes2Net
        from mmdet.models.backbones.resnet import ResNet as DetResNet
        model = DetRes2Net.__new__(DetRes2Net)
        model.scales = kwargs.pop('scales')
        model.base_width = kwargs.pop('base_width')
        DetResNet.__init__(model, style='caffe', deep_stem=True,
                           avg_down=True, **kwargs)
        return model


def test_mmdet_reference_is_really_caffe_style():
    theirs = _CaffeStyle.mmdet(out_indices=(0, 1, 2, 3), **SMALL)
    block = theirs.layer2[0]
    assert block.style == 'caffe'
    assert block.conv1.stride == (2, 2)
    assert all(c.stride == (1, 1) for c in block.convs)
    assert not hasattr(block, 'pool')


def test_caffe_style_layout():
    for stage_pool, pooled in (('always', True), ('strided', False)):
        model = Res2Net(**TINY, style='caffe', stage_pool=stage_pool)
        block = model.layer2[0]
        assert block.conv1.stride == (2, 2)
        assert all(c.stride == (1, 1) for c in block.convs)
        if pooled:
            assert block.pool.stride == 1
        else:
            assert block.pool is None
        # the later blocks and the shortcut do not depend on the style
        assert model.layer2[1].conv1.stride == (1, 1)
        assert model.layer2[0].downsample[0].stride == (2, 2)


@pytest.mark.parametrize('arch', [
    dict(),
    dict(strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4)),
], ids=str)
def test_caffe_style_matches_mmdet(arch):
    theirs = randomize(_CaffeStyle.mmdet(out_indices=(0, 1, 2, 3), **SMALL,
                                         **arch))
    theirs.eval()
    native = from_mmdet(theirs.state_dict())
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        expected = theirs(x)
        # mmdet-compatible mode: mmdet's per-split computation, bit for bit
        exact = Res2Net(out_indices=(0, 1, 2, 3), deep_stem=True,
                        avg_down=True, style='caffe', stage_pool='strided',
                        fast_path=False, **SMALL, **arch).eval()
        exact.load_state_dict(native, strict=True)
        for a, b in zip(exact(x), expected, strict=True):
            assert torch.equal(a, b)
        fast = Res2Net(out_indices=(0, 1, 2, 3), deep_stem=True,
                       avg_down=True, style='caffe', stage_pool='strided',
                       **SMALL, **arch).eval()
        fast.load_state_dict(native, strict=True)
        for a, b in zip(fast(x), expected, strict=True):
            assert_close(a, b, rtol=1e-6)
        # and the style matters on these weights
        pytorch_style = Res2Net(out_indices=(0, 1, 2, 3), deep_stem=True,
                                avg_down=True, stage_pool='strided',
                                fast_path=False, **SMALL, **arch).eval()
        pytorch_style.load_state_dict(native, strict=True)
        assert (pytorch_style(x)[1] - expected[1]).abs().max() > 1e-3


def test_caffe_style_matches_mmpretrain():
    """mmpretrain honours ``style`` and pools every stage block (official
    pooling, ``stage_pool='always'``), at stride 1 in caffe style."""
    ours, theirs = _mmpretrain_pair(style='caffe')
    assert theirs.layer2[0].conv1.stride == (2, 2)
    _assert_same_outputs(ours, theirs)


def test_caffe_style_fast_paths_and_deploy():
    """The grouped stage conv, the lean chained splits (training) and the
    folded deploy model compute the caffe block as the per-split path."""
    torch.manual_seed(0)
    plain = randomize(Res2Net(**TINY, style='caffe', fast_path=False))
    fast = Res2Net(**TINY, style='caffe')
    fast.load_state_dict(plain.state_dict())
    x = torch.rand(2, 3, 32, 32)
    for model in (plain, fast):
        model.train()
        model.zero_grad()
        model(x)[0].square().sum().backward()
    for p, q in zip(plain.parameters(), fast.parameters(), strict=True):
        assert_close(q.grad, p.grad, rtol=1e-5)
    plain.eval()
    with torch.no_grad():
        expected = plain(x)[0]
        deployed = fast.eval().switch_to_deploy()
        assert_close(deployed(x)[0], expected, rtol=1e-5)


# ----------------------------------------------- mmseg's dilated semantics

def _mmseg_backbone(config):
    from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    import mmseg
    path = osp.join(osp.dirname(mmseg.__file__), '.mim', 'configs', config)
    backbone = Config.fromfile(path).model.backbone.to_dict()
    backbone.pop('init_cfg', None)
    backbone['norm_cfg'] = dict(type='BN')  # SyncBN needs a process group
    return backbone


# mmseg's own dilated configs: ResNetV1c with contract_dilation=True at
# output stride 8 (PSPNet, DeepLabV3+) and 16 with multi_grid (DeepLabV3).
MMSEG_CONFIGS = [
    '_base_/models/pspnet_r50-d8.py',
    'deeplabv3/deeplabv3_r101-d16-mg124_4xb2-40k_cityscapes-512x1024.py',
    'deeplabv3plus/deeplabv3plus_r101-d16-mg124_4xb2-40k_'
    'cityscapes-512x1024.py',
]


def _their_blocks(model):
    return [[(b.conv2.stride, b.conv2.dilation, b.conv2.padding)
             for b in getattr(model, name)] for name in model.res_layers]


def _our_blocks(model):
    out = []
    for name in model.res_layers:
        stage = []
        for b in getattr(model, name):
            convs = {(c.stride, c.dilation, c.padding) for c in b.convs}
            assert len(convs) == 1  # every split conv alike
            stage.append(convs.pop())
        out.append(stage)
    return out


@pytest.mark.parametrize('config', MMSEG_CONFIGS)
@pytest.mark.parametrize('contract', [None, False])
def test_dilations_match_mmseg(config, contract):
    from mmseg.models.backbones import ResNet as SegResNet
    args = _mmseg_backbone(config)
    assert args.pop('type') == 'ResNetV1c'
    if contract is not None:
        args['contract_dilation'] = contract
    theirs = SegResNet(deep_stem=True, avg_down=False, **args)
    theirs.eval()
    ours = Res2Net(deep_stem=True, avg_down=False, **args).eval()
    assert _our_blocks(ours) == _their_blocks(theirs)
    x = torch.rand(1, 3, 48, 48)
    with torch.no_grad():
        assert [o.shape for o in ours(x)] == [o.shape for o in theirs(x)]


def test_contract_dilation_and_multi_grid_are_not_noops():
    args = _mmseg_backbone(MMSEG_CONFIGS[1])
    args.pop('type')
    assert args['contract_dilation'] and args['multi_grid'] == (1, 2, 4)
    default = _our_blocks(Res2Net(**dict(args, contract_dilation=False,
                                         multi_grid=None)))
    ours = _our_blocks(Res2Net(**args))
    assert [d for _, d, _ in ours[3]] == [(1, 1), (2, 2), (4, 4)]
    assert [d for _, d, _ in default[3]] == [(2, 2)] * 3
    d8_args = _mmseg_backbone(MMSEG_CONFIGS[0])
    d8_args.pop('type')
    d8 = _our_blocks(Res2Net(**d8_args))
    # contracted first blocks: 2 -> 1 in layer3, 4 -> 2 in layer4
    assert d8[2][0][1] == (1, 1) and d8[3][0][1] == (2, 2)
    assert d8[2][1][1] == (2, 2) and d8[3][1][1] == (4, 4)


# ------------------------------------------------------------ pretrained

def test_pretrained_is_the_deprecated_init_cfg_alias(tmp_path):
    from mmdet.models.backbones import ResNet as DetResNet
    source = randomize(Res2Net(**TINY))
    path = str(tmp_path / 'backbone.pth')
    torch.save(source.state_dict(), path)
    with warnings.catch_warnings(record=True) as ours_warned:
        warnings.simplefilter('always')
        ours = Res2Net(**TINY, pretrained=path)
    with warnings.catch_warnings(record=True) as mmdet_warned:
        warnings.simplefilter('always')
        DetResNet(depth=50, pretrained=path)
    assert [str(w.message) for w in ours_warned] == [
        str(w.message) for w in mmdet_warned]
    assert ours.init_cfg == dict(type='Pretrained', checkpoint=path)
    ours.init_weights()
    for key, value in source.state_dict().items():
        assert torch.equal(ours.state_dict()[key], value), key


def test_pretrained_conflicts_with_init_cfg_as_in_mmdet():
    from mmdet.models.backbones import ResNet as DetResNet
    init_cfg = dict(type='Pretrained', checkpoint='a.pth')
    with pytest.raises(AssertionError) as theirs:
        DetResNet(depth=50, pretrained='b.pth', init_cfg=init_cfg)
    with pytest.raises(ValueError) as ours:
        Res2Net(**TINY, pretrained='b.pth', init_cfg=init_cfg)
    assert str(theirs.value) in str(ours.value)
    with pytest.raises(TypeError, match='pretrained must be a str or None'):
        Res2Net(**TINY, pretrained=True)


def test_style_is_kept_by_blocks():
    model = Res2Net(**TINY, style='caffe')
    assert {b.style for b in model.modules() if isinstance(b, Bottle2neck)
            } == {'caffe'}
