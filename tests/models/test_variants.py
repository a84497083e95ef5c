"""The variant table: every entry builds and matches its declared numbers."""
import pytest

from res2net_mm import MODELS, VARIANTS, Res2Net, build_classifier
from res2net_mm.utils import count_macs, count_params


@pytest.mark.parametrize('name', list(VARIANTS))
def test_params_exact_and_gmacs_within_1_percent(name):
    variant = VARIANTS[name]
    model = build_classifier(name, num_classes=1000)
    assert count_params(model) == variant.params
    gmacs = count_macs(model, (1, 3, 224, 224)) / 1e9
    assert gmacs == pytest.approx(variant.gmacs, rel=0.01)


@pytest.mark.parametrize('name', list(VARIANTS))
def test_table_entry_is_complete(name):
    variant = VARIANTS[name]
    assert variant.name == name
    assert variant.source
    assert variant.top1 is None or 70 < variant.top1 < 90
    assert set(variant.backbone) <= {
        'depth', 'scales', 'base_width', 'groups', 'deep_stem', 'avg_down',
        'se_ratio'
    }


def test_build_by_name_from_python_and_config():
    direct = Res2Net(arch='res2net101_v1b')
    from_cfg = MODELS.build(dict(type='res2net_mm.Res2Net',
                                 arch='res2net101_v1b'))
    for model in (direct, from_cfg):
        assert model.depth == 101 and model.deep_stem and model.avg_down
    assert count_params(direct) == count_params(from_cfg) == \
        VARIANTS['res2net101_v1b'].params - (2048 * 1000 + 1000)
