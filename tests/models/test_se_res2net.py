"""SE-Res2Net-50: the named variant, its parameter count and SE placement."""
import pytest
import torch

from res2net_mm import VARIANTS, Res2Net, build_classifier
from res2net_mm.models import Bottle2neck
from res2net_mm.utils import count_params

from .utils import assert_close, randomize


def test_params_add_exactly_what_se_adds_to_resnet50():
    """timm's SENet-50 (seresnet50) minus ResNet-50 is the SE modules'
    parameter count; SE-Res2Net-50 adds the same to Res2Net-50."""
    import timm
    senet = timm.create_model('seresnet50')
    resnet = timm.create_model('resnet50')
    se_in_senet = sum(p.numel() for n, p in senet.named_parameters()
                      if '.se.' in n)
    assert se_in_senet == count_params(senet) - count_params(resnet)
    ours = build_classifier('se_res2net50')
    plain = build_classifier('res2net50_26w_4s')
    assert count_params(ours) - count_params(plain) == se_in_senet
    assert count_params(ours) == VARIANTS['se_res2net50'].params
    assert sum(p.numel() for n, p in ours.named_parameters()
               if '.se.' in n) == se_in_senet


def test_se_module_equals_timm_se_with_the_same_weights():
    from timm.layers import SEModule
    net = Res2Net(arch='se_res2net50')
    ours = randomize(net.layer2[0].se).eval()
    theirs = SEModule(512, rd_ratio=1 / 16).eval()
    theirs.load_state_dict(ours.state_dict(), strict=True)  # fc1 / fc2
    x = torch.randn(2, 512, 4, 4)
    with torch.no_grad():
        assert_close(ours(x), theirs(x), rtol=1e-6)


def test_se_follows_the_last_norm_of_every_block():
    net = randomize(Res2Net(arch='se_res2net50')).eval()
    blocks = [m for m in net.modules() if isinstance(m, Bottle2neck)]
    assert len(blocks) == 16 and all(b.se is not None for b in blocks)
    block = net.layer3[1]
    seen = {}
    block.norm3.register_forward_hook(lambda m, i, o: seen.update(bn3=o))
    block.se.register_forward_hook(lambda m, i, o: seen.update(
        se_in=i[0], se_out=o))
    x = torch.randn(1, 1024, 4, 4)
    with torch.no_grad():
        out = block(x)
    assert torch.equal(seen['se_in'], seen['bn3'])
    assert_close(out, torch.relu(seen['se_out'] + x), rtol=1e-6)


def test_weights_are_recognised_as_the_variant():
    from res2net_mm.converters.detect import detect_variant
    state = build_classifier('se_res2net50').state_dict()
    native = {k[len('backbone.'):] if k.startswith('backbone.') else k: v
              for k, v in state.items()}
    found = detect_variant(native)
    assert found['se_ratio'] == 16
    assert found['variants'] == ['se_res2net50']


@pytest.mark.parametrize('name', ['res2net_dla60', 'blres2net50'])
def test_other_families_are_not_res2net_archs(name):
    """The family field keeps DLA / bL names away from Res2Net's weight
    detector (their backbone entries carry no ``depth``)."""
    from res2net_mm.converters.detect import detect_variant
    native = {k[len('backbone.'):] if k.startswith('backbone.') else k: v
              for k, v in build_classifier('res2net50_26w_4s').state_dict()
              .items()}
    assert name not in detect_variant(native)['variants']
