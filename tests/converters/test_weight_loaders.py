"""The weight loaders the backbones look up in ``res2net_mm.registry``
(``WEIGHT_LOADERS``) instead of importing the converters: registered by name,
found from the backbones, one ``Pretrained`` loader for Res2Net and
Res2Net-DLA with the same options and errors."""
import subprocess
import sys

import pytest
import torch
from torch import nn

from res2net_mm import Res2Net, Res2NetDLA
from res2net_mm.converters import loading
from res2net_mm.converters.errors import (CheckpointError,
                                          NonFiniteWeightsError,
                                          WeightMismatchError)
from res2net_mm.converters.keymaps import TO_FORMAT
from res2net_mm.registry import WEIGHT_LOADERS, get_weight_loader

from .utils import ROOT, TINY_V1, TINY_V1B, randomize


def test_registered_under_their_names():
    assert sorted(WEIGHT_LOADERS.module_dict) == ['Pretrained',
                                                  'deep_stem_keys']
    assert get_weight_loader('Pretrained') is \
        loading.load_pretrained_from_init_cfg
    assert get_weight_loader('deep_stem_keys') is \
        loading.rename_deep_stem_keys
    with pytest.raises(KeyError, match="no weight loader 'Nope' is "
                       r"registered \(registered: \['Pretrained'"):
        get_weight_loader('Nope')


def test_importing_the_models_alone_registers_them():
    """``import res2net_mm.models`` runs the package's ``__init__``, which
    imports the converters: the loaders exist before any backbone does."""
    code = ('import res2net_mm.models, sys; '
            'from res2net_mm.registry import WEIGHT_LOADERS as W; '
            'print(sorted(W.module_dict)); '
            "print('res2net_mm.converters.loading' in sys.modules)")
    result = subprocess.run([sys.executable, '-c', code], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split('\n')[:2] == [
        "['Pretrained', 'deep_stem_keys']", 'True']


@pytest.mark.parametrize('build', [
    lambda cfg: Res2Net(**TINY_V1, init_cfg=cfg),
    lambda cfg: Res2NetDLA(init_cfg=cfg)
], ids=['Res2Net', 'Res2NetDLA'])
def test_backbones_call_the_registered_loader(build, monkeypatch):
    calls = []
    monkeypatch.setitem(WEIGHT_LOADERS.module_dict, 'Pretrained',
                        lambda model, cfg: calls.append((model, cfg)))
    cfg = dict(type='Pretrained', checkpoint='any.pth')
    model = build(cfg)
    model.init_weights()
    assert calls == [(model, cfg)]
    assert model._is_init


def test_load_state_dict_renames_through_the_registered_hook(monkeypatch):
    """mmdet's ``stem.N`` names load strictly with plain ``load_state_dict``
    (what mmengine's ``load_checkpoint`` calls), under any prefix, by the
    hook the converters register; a 7x7-stem backbone never calls it."""
    source = randomize(Res2Net(**TINY_V1B))
    mmdet = TO_FORMAT['mmdet'](source.state_dict())
    assert 'stem.0.weight' in mmdet and 'conv1.0.weight' not in mmdet
    prefixes = []

    def hook(state_dict, prefix):
        prefixes.append(prefix)
        loading.rename_deep_stem_keys(state_dict, prefix)

    monkeypatch.setitem(WEIGHT_LOADERS.module_dict, 'deep_stem_keys', hook)
    ours = Res2Net(**TINY_V1B)
    ours.load_state_dict(mmdet, strict=True)
    detector = nn.Module()
    detector.backbone = Res2Net(**TINY_V1B)
    detector.load_state_dict({f'backbone.{k}': v for k, v in mmdet.items()},
                             strict=True)
    assert prefixes == ['', 'backbone.']
    for k, v in source.state_dict().items():
        assert torch.equal(ours.state_dict()[k], v), k
        assert torch.equal(detector.backbone.state_dict()[k], v), k
    Res2Net(**TINY_V1).load_state_dict(Res2Net(**TINY_V1).state_dict())
    assert prefixes == ['', 'backbone.']


def test_dla_is_told_by_its_layout():
    assert loading.is_dla_backbone(Res2NetDLA())
    assert not loading.is_dla_backbone(Res2Net(**TINY_V1))
    lookalike = nn.Module()
    lookalike.base_layer, lookalike.level5 = nn.Identity(), nn.Identity()
    assert loading.is_dla_backbone(lookalike)


@pytest.fixture(scope='module')
def dla_file(tmp_path_factory):
    """Random Res2Net-DLA-60 weights in timm's layout (with classifier)."""
    source = randomize(Res2NetDLA())
    state = dict(source.state_dict(), **{'fc.weight': torch.randn(10, 1024),
                                         'fc.bias': torch.randn(10)})
    path = tmp_path_factory.mktemp('dla') / 'dla.pth'
    torch.save(state, path)
    return path, state


def test_dla_through_the_one_loader(dla_file, tmp_path):
    """The options and errors of the Res2Net loader, on a DLA backbone."""
    path, state = dla_file
    target = Res2NetDLA()
    pretrained = get_weight_loader('Pretrained')
    fit = pretrained(target, dict(type='Pretrained', checkpoint=str(path)))
    assert sorted(fit['dropped']) == ['fc.bias', 'fc.weight']
    for k, v in target.state_dict().items():
        assert torch.equal(v, state[k]), k

    wrapped = tmp_path / 'wrapped.pth'
    torch.save({'state_dict': {f'backbone.{k}': v
                               for k, v in state.items()}}, wrapped)
    with pytest.raises(CheckpointError, match="no keys start with prefix "
                       "'neck.'"):
        pretrained(target, dict(type='Pretrained', checkpoint=str(wrapped),
                                prefix='neck.'))
    with pytest.raises(ValueError, match="'mmdet' is not a Res2Net-DLA "
                       'naming'):
        pretrained(target, dict(type='Pretrained', checkpoint=str(path),
                                format='mmdet'))

    nan = dict(state)
    nan['level2.root.bn.weight'] = torch.full_like(
        state['level2.root.bn.weight'], float('nan'))
    torch.save(nan, tmp_path / 'nan.pth')
    with pytest.raises(NonFiniteWeightsError,
                       match='level2.root.bn.weight: 128 NaN'):
        pretrained(target, dict(type='Pretrained',
                                checkpoint=str(tmp_path / 'nan.pth')))
    pretrained(target, dict(type='Pretrained', allow_nonfinite=True,
                            checkpoint=str(tmp_path / 'nan.pth')))
    assert target.level2.root.bn.weight.isnan().all()

    broken = dict(state)
    del broken['level5.root.conv.weight']
    broken['level5.root.bn.bias'] = torch.zeros(3)
    torch.save(broken, tmp_path / 'broken.pth')
    cfg = dict(type='Pretrained', checkpoint=str(tmp_path / 'broken.pth'))
    before = target.level5.root.conv.weight.clone()
    with pytest.raises(WeightMismatchError, match=(
            r'1 mis-shaped, 1 missing.*\n.*level5.root.bn.bias: checkpoint '
            r'\(3,\) vs model \(1024,\)')) as e:
        pretrained(target, cfg)
    assert isinstance(e.value, RuntimeError)  # as torch's strict load's
    pretrained(target, dict(cfg, allow_mismatch=True))
    assert torch.equal(target.level5.root.conv.weight, before)
    # the rest is loaded, the NaN weights of the last load replaced
    assert torch.equal(target.level2.root.bn.weight,
                       state['level2.root.bn.weight'])
