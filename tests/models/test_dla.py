"""Res2Net-DLA-60 and Res2NeXt-DLA-60: timm parity, official checkpoints,
the backbone contract (out_indices, frozen_stages, norm_eval, init_cfg)."""
import pytest
import torch

from res2net_mm import MODELS, VARIANTS, build_classifier
from res2net_mm.converters.keymaps import dla_from_official, dla_to_timm
from res2net_mm.models.dla import TIMM_NAMES, Res2NetDLA
from res2net_mm.utils import count_macs, count_params

from .utils import assert_close, batchnorms, randomize

# Compared with timm in its own layout (see the fixture).
pytestmark = pytest.mark.usefixtures('nchw_like_references')

ARCHS = sorted(TIMM_NAMES)
# REFERENCE.md section 2: the official models, unused project convs included.
OFFICIAL_PARAMS = {'res2net_dla60': 21_145_544, 'res2next_dla60': 17_330_456}
OFFICIAL_GMACS = {'res2net_dla60': 4.200, 'res2next_dla60': 3.536}


def timm_model(arch, seed=0):
    import timm
    return randomize(timm.create_model(TIMM_NAMES[arch]), seed).eval()


def official_state(timm_net):
    """The official file's layout: timm's weights plus a project conv + BN
    in every multi-level tree that changes channels, which the official code
    builds (and computes) but never uses."""
    from timm.models.dla import DlaTree
    state = dict(timm_net.state_dict())
    g = torch.Generator().manual_seed(1)
    for name, tree in timm_net.named_modules():
        if not isinstance(tree, DlaTree) or tree.levels == 1:
            continue
        leaf = tree
        while isinstance(leaf.tree1, DlaTree):
            leaf = leaf.tree1
        cin = leaf.tree1.conv1.in_channels
        cout = leaf.tree1.conv3.out_channels
        if cin == cout:
            continue
        p = f'{name}.project.'
        state[p + '0.weight'] = torch.randn(cout, cin, 1, 1, generator=g)
        for leaf_name in ('weight', 'bias', 'running_mean'):
            state[p + f'1.{leaf_name}'] = torch.randn(cout, generator=g)
        state[p + '1.running_var'] = torch.rand(cout, generator=g) + 0.5
        state[p + '1.num_batches_tracked'] = torch.tensor(7)
    return state


def _params(state):
    return sum(v.numel() for k, v in state.items()
               if not k.endswith(('running_mean', 'running_var',
                                  'num_batches_tracked')))


@pytest.mark.parametrize('arch', ARCHS)
def test_logits_and_every_level_match_timm(arch):
    theirs = timm_model(arch)
    ours = build_classifier(arch).eval()
    native, dropped = dla_from_official(theirs.state_dict())
    assert not dropped  # timm never had the unused projects
    state = {('backbone.' + k if not k.startswith('fc.') else k): v
             for k, v in native.items()}
    ours.load_state_dict(state, strict=True)
    x = torch.rand(2, 3, 64, 64)
    backbone = Res2NetDLA(arch=arch, out_indices=range(6)).eval()
    backbone.load_state_dict(ours.backbone.state_dict(), strict=True)
    with torch.no_grad():
        assert_close(ours(x), theirs(x), rtol=1e-6)
        levels = theirs.forward_intermediates(x, intermediates_only=True)
        for a, b in zip(backbone(x), levels, strict=True):
            assert_close(a, b, rtol=1e-6)
    # and back: our weights are timm's, classifier reshaped to its 1x1 conv
    back = dla_to_timm(native)
    assert back['fc.weight'].shape == theirs.fc.weight.shape
    theirs.load_state_dict(back, strict=True)


@pytest.mark.parametrize('arch', ARCHS)
def test_counts_with_and_without_the_unused_projects(arch):
    theirs = timm_model(arch)
    ours = build_classifier(arch)
    assert count_params(ours) == count_params(theirs) == VARIANTS[arch].params
    official = official_state(theirs)
    extra = sorted(set(official) - set(theirs.state_dict()))
    assert len(extra) == 18  # REFERENCE.md section 5
    assert _params(official) == OFFICIAL_PARAMS[arch]
    # the official forward also runs the three unused 1x1 convs
    unused_macs = sum(
        official[k].numel() * (224 // stride)**2 for k, stride in zip(
            [k for k in extra if k.endswith('project.0.weight')], (8, 16, 16)))
    assert sorted(k.split('.project')[0] for k in extra
                  if k.endswith('project.0.weight')) == [
                      'level3', 'level4', 'level4.tree1']
    gmacs = (count_macs(ours) + unused_macs) / 1e9
    assert gmacs == pytest.approx(OFFICIAL_GMACS[arch], abs=0.001)


@pytest.mark.parametrize('arch', ARCHS)
def test_official_checkpoint_loads_through_init_cfg(arch, tmp_path,
                                                    monkeypatch):
    theirs = timm_model(arch)
    path = tmp_path / 'official.pth'
    torch.save(official_state(theirs), path)
    backbone = Res2NetDLA(
        arch=arch, out_indices=(2, 3, 4, 5),
        init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    backbone.init_weights()
    backbone.eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        levels = theirs.forward_intermediates(x, indices=(2, 3, 4, 5),
                                              intermediates_only=True)
        for a, b in zip(backbone(x), levels, strict=True):
            assert_close(a, b, rtol=1e-6)
    # a URL: fetched once into torch's hub cache, then read from there
    hub = tmp_path / 'hub'
    monkeypatch.setattr(torch.hub, '_hub_dir', str(hub))
    from_url = Res2NetDLA(arch=arch, out_indices=(2, 3, 4, 5), init_cfg=dict(
        type='Pretrained', checkpoint=path.as_uri()))
    from_url.init_weights()
    assert (hub / 'checkpoints' / 'official.pth').is_file()
    for k, v in backbone.state_dict().items():
        assert torch.equal(from_url.state_dict()[k], v), k
    # an mmpretrain-style file of our own classifier, through its prefix
    wrapped = tmp_path / 'classifier.pth'
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in
                               backbone.state_dict().items()}}, wrapped)
    again = Res2NetDLA(arch=arch, out_indices=(2, 3, 4, 5), init_cfg=dict(
        type='Pretrained', checkpoint=str(wrapped), prefix='backbone.'))
    again.init_weights()
    for k, v in backbone.state_dict().items():
        assert torch.equal(again.state_dict()[k], v), k


def test_wrong_weights_raise_with_the_keys(tmp_path):
    path = tmp_path / 'res2next.pth'
    torch.save(timm_model('res2next_dla60').state_dict(), path)
    backbone = Res2NetDLA(arch='res2net_dla60', init_cfg=dict(
        type='Pretrained', checkpoint=str(path)))
    with pytest.raises(RuntimeError, match='mis-shaped.*\n.*checkpoint'):
        backbone.init_weights()
    with pytest.raises(KeyError, match='unknown Pretrained init_cfg keys'):
        Res2NetDLA(init_cfg=dict(type='Pretrained', checkpoint=str(path),
                                 strict=False)).init_weights()


def test_arch_names_and_bad_arguments():
    with pytest.raises(ValueError, match='is a Res2Net variant'):
        Res2NetDLA(arch='res2net50')
    with pytest.raises(KeyError, match='invalid depth 34'):
        Res2NetDLA(depth=34)
    with pytest.raises(IndexError, match='out of range'):
        Res2NetDLA(out_indices=(6, ))
    with pytest.raises(ValueError, match='frozen_stages'):
        Res2NetDLA(frozen_stages=6)
    net = Res2NetDLA(arch='res2next_dla60')
    assert (net.scales, net.base_width, net.groups) == (4, 4, 8)
    assert net.level2.tree1.convs[0].groups == 8


def test_multi_level_outputs_and_registries():
    from mmdet.registry import MODELS as MMDET_MODELS
    from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS
    cfg = dict(type='res2net_mm.Res2NetDLA', arch='res2net_dla60',
               out_indices=(2, 3, 4, 5))
    for registry in (MODELS, MMDET_MODELS, MMPRETRAIN_MODELS):
        assert type(registry.build(cfg)) is Res2NetDLA
    net = MODELS.build(cfg).eval()
    assert net.out_channels == [128, 256, 512, 1024]
    with torch.no_grad():
        outs = net(torch.rand(1, 3, 64, 64))
    assert [tuple(o.shape[1:]) for o in outs] == [
        (128, 16, 16), (256, 8, 8), (512, 4, 4), (1024, 2, 2)]


def test_frozen_stages_and_norm_eval():
    net = Res2NetDLA(arch='res2net_dla60', out_indices=(2, 3, 4, 5),
                     frozen_stages=2)
    net.train()
    for name in ('base_layer', 'level0', 'level1', 'level2'):
        module = getattr(net, name)
        assert not any(p.requires_grad for p in module.parameters()), name
        assert all(not bn.training for bn in batchnorms(module)), name
    assert all(p.requires_grad for p in net.level3.parameters())
    assert all(bn.training for bn in batchnorms(net.level3))
    out = net(torch.rand(2, 3, 32, 32))
    sum(o.mean() for o in out).backward()
    assert net.level3.tree1.tree1.conv1.weight.grad is not None
    assert net.level2.tree1.conv1.weight.grad is None

    net = Res2NetDLA(arch='res2net_dla60', norm_eval=True).train()
    assert all(not bn.training for bn in batchnorms(net))
    assert net.training


def test_default_init_is_kaiming_and_runs():
    net = Res2NetDLA(arch='res2next_dla60')
    net.init_weights()
    bn = net.level5.root.bn
    assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)
    w = net.level5.tree1.conv3.weight
    # Kaiming normal, fan_out: std sqrt(2 / (out * k * k))
    assert w.std().item() == pytest.approx((2 / w.shape[0])**0.5, rel=0.1)
