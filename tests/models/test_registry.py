"""``type='res2net_mm.Res2Net'`` builds from mmpretrain, mmdet and directly."""
import subprocess
import sys

import pytest
from mmengine.registry import DefaultScope

import res2net_mm
from res2net_mm import MODELS, Res2Net

TINY_CFG = dict(type='res2net_mm.Res2Net', depth=26, base_width=4,
                base_channels=16, stem_channels=16)


def test_own_registry():
    assert MODELS.scope == 'res2net_mm'
    assert MODELS.parent.scope == 'mmengine'
    # mmengine builds from the *current default scope's* registry, so a bare
    # 'Res2Net' needs our scope active (another test may have left mmdet's)
    with DefaultScope.overwrite_default_scope('res2net_mm'):
        assert isinstance(MODELS.build(dict(TINY_CFG, type='Res2Net')),
                          Res2Net)
    # the scoped name works whatever the default scope is
    with DefaultScope.overwrite_default_scope('mmdet'):
        assert isinstance(MODELS.build(TINY_CFG), Res2Net)


@pytest.mark.parametrize('toolbox', ['mmpretrain', 'mmdet'])
def test_builds_from_toolbox_registry_without_shadowing(toolbox):
    registry = __import__(f'{toolbox}.registry', fromlist=['MODELS']).MODELS
    with DefaultScope.overwrite_default_scope(toolbox):
        model = registry.build(TINY_CFG)
        assert isinstance(model, res2net_mm.Res2Net)
        theirs = registry.get('Res2Net')
    # their own Res2Net still resolves to their class
    assert theirs is not res2net_mm.Res2Net
    assert theirs.__module__.startswith(toolbox)


def test_builds_inside_mmpretrain_classifier():
    from mmpretrain.registry import MODELS as PRETRAIN
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        classifier = PRETRAIN.build(
            dict(type='ImageClassifier', backbone=TINY_CFG,
                 neck=dict(type='GlobalAveragePooling'),
                 head=dict(type='LinearClsHead', num_classes=10,
                           in_channels=512)))
    assert isinstance(classifier.backbone, res2net_mm.Res2Net)


@pytest.mark.parametrize('toolbox', ['mmpretrain', 'mmdet'])
def test_scoped_type_resolves_in_fresh_process(toolbox):
    """No import of res2net_mm: mmengine finds it from the scope name."""
    code = (
        'from mmengine.registry import init_default_scope\n'
        f'from {toolbox}.registry import MODELS\n'
        f'init_default_scope({toolbox!r})\n'
        f'm = MODELS.build({TINY_CFG!r})\n'
        'print(type(m).__module__)\n')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == 'res2net_mm.models.res2net'


def test_import_needs_no_compiled_ops():
    """The backbone imports only torch, mmengine and mmcv.cnn (mmcv-lite)."""
    code = ('import sys, res2net_mm\n'
            'from res2net_mm import Res2Net\n'
            'Res2Net(depth=26)\n'
            'bad = [m for m in sys.modules if m.startswith(("mmcv.ops", '
            '"mmpretrain", "mmdet", "timm", "mindspore"))]\n'
            'print(bad)\n')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == '[]'
