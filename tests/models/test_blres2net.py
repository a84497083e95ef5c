"""bLRes2Net-50: the bLResNet-50 skeleton with Res2Net blocks."""
import pytest
import torch
from torch import nn

from res2net_mm import MODELS, VARIANTS, build_classifier
from res2net_mm.models import Bottle2neck
from res2net_mm.models.blres2net import BLBottle2neck, BLModule, BLRes2Net
from res2net_mm.utils import count_macs, count_params

from .utils import assert_close, batchnorms, randomize

# Big-Little Net's published figure for bLResNet-50 (alpha 2, beta 4):
# 2.85 GFLOPs (github.com/IBM/BigLittleNet README, "Results and Models").
BLRESNET50_GFLOPS = 2.85


class PlainBottleneck(nn.Module):
    """The ResNet bottleneck of bLResNet (mid width = out / 4, stride in the
    3x3 conv), with the Bottle2neck constructor's signature."""
    expansion = 4

    def __init__(self, in_channels, planes, stride=1, downsample=None,
                 last_relu=True, **_):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = downsample
        self.last_relu = last_relu
        self.stride = stride

    def forward(self, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out)) + shortcut
        return torch.relu(out) if self.last_relu else out


class BLResNet(BLRes2Net):
    block = PlainBottleneck


class WithHead(nn.Module):

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone
        self.fc = nn.Linear(2048, 1000)

    def forward(self, x):
        return self.fc(self.backbone(x)[-1].mean((2, 3)))


def _blocks(net):
    return [m for m in net.modules()
            if isinstance(m, (PlainBottleneck, Bottle2neck))]


def test_skeleton_is_blresnet50():
    """With ResNet blocks the same skeleton has bLResNet-50's published
    FLOPs; with Res2Net blocks only the blocks change."""
    plain = WithHead(BLResNet(depth=50))
    assert count_macs(plain) / 1e9 == pytest.approx(BLRESNET50_GFLOPS,
                                                    rel=0.01)
    ours = BLRes2Net(arch='blres2net50')
    a, b = _blocks(plain.backbone), _blocks(ours)
    assert len(a) == len(b) == 3 + 4 + 6 + 3 + 3  # + one little block each
    for p, r in zip(a, b, strict=True):
        assert isinstance(r, BLBottle2neck)
        assert p.conv1.in_channels == r.conv1.in_channels
        assert p.conv3.out_channels == r.conv3.out_channels
        assert p.stride == r.stride and p.last_relu == r.last_relu
        assert (p.downsample is None) == (r.downsample is None)
        assert r.stage_block == (r.downsample is not None)
    # the rest (stems, little_e expansions, shortcuts) is identical
    rest = {k: v.shape for k, v in plain.backbone.state_dict().items()
            if '.big.' not in k and '.little.' not in k and '.fusion.' not in
            k and not k.startswith('layer4.')}
    assert rest == {k: v.shape for k, v in ours.state_dict().items()
                    if k in rest}
    # Complexity: Res2Net blocks 26w x 4s (Res2Net-50's) in place of
    # bottlenecks; params within 1% and FLOPs 5% above bLResNet-50's.
    variant = VARIANTS['blres2net50']
    assert count_params(build_classifier('blres2net50')) == variant.params
    assert variant.params / count_params(plain) == pytest.approx(1, abs=0.01)
    assert variant.gmacs / BLRESNET50_GFLOPS == pytest.approx(1.05, abs=0.01)


def test_bl_module_layout():
    net = BLRes2Net(arch='blres2net50')
    assert isinstance(net.layer1, BLModule) and isinstance(net.layer4,
                                                           nn.Sequential)
    # big: n - 1 blocks, little: max(1, n // 4 - 1) at half the channels
    assert [len(getattr(net, f'layer{i}').big) for i in (1, 2, 3)] == [2, 3, 5]
    assert [len(getattr(net, f'layer{i}').little) for i in (1, 2, 3)] == \
        [1, 1, 1]
    assert net.layer1.little[0].conv3.out_channels == 128
    assert net.layer1.big[0].stride == 2 and net.layer1.little[0].stride == 1
    assert [blk.last_relu for blk in net.layer2.big] == [True, True, False]
    assert net.layer3.fusion[0].stride == 1 and net.layer3.fusion[0].pool \
        is None
    net = BLRes2Net(arch='blres2net50', out_indices=(0, 1, 2, 3)).eval()
    assert net.out_channels == [256, 512, 1024, 2048]
    with torch.no_grad():
        outs = net(torch.rand(1, 3, 64, 64))
    # output strides 8, 16, 16, 32
    assert [tuple(o.shape[1:]) for o in outs] == [
        (256, 8, 8), (512, 4, 4), (1024, 4, 4), (2048, 2, 2)]


@pytest.mark.parametrize('stage', [True, False])
def test_block_without_last_relu_is_bottle2neck_before_its_relu(stage):
    kwargs = dict(stride=2 if stage else 1, scales=4, base_width=26,
                  stage_block=stage)
    ref = Bottle2neck(64, 16, downsample=nn.Sequential(
        nn.AvgPool2d(3, 2, 1), nn.Conv2d(64, 64, 1, bias=False),
        nn.BatchNorm2d(64)) if stage else None, **kwargs)
    randomize(ref)
    ours = BLBottle2neck(64, 16, downsample=ref.downsample, last_relu=False,
                         **kwargs)
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 64, 16, 16)
    for train in (False, True):
        ref.train(train)
        ours.train(train)
        with torch.no_grad():
            pre = ours(x)
            assert (pre < 0).any()  # no ReLU
            assert_close(torch.relu(pre), ref(x), rtol=1e-6)
    ours.last_relu = True
    with torch.no_grad():
        assert_close(ours(x), ref(x), rtol=1e-6)


def test_contract_frozen_stages_norm_eval_registries_and_errors():
    from mmdet.registry import MODELS as MMDET_MODELS
    from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS
    cfg = dict(type='res2net_mm.BLRes2Net', arch='blres2net50',
               out_indices=(0, 1, 2, 3), frozen_stages=1)
    for registry in (MODELS, MMDET_MODELS, MMPRETRAIN_MODELS):
        assert type(registry.build(cfg)) is BLRes2Net
    net = MODELS.build(cfg).train()
    for module in (net.conv1, net.l_conv0, net.bl_init, net.layer1):
        assert not any(p.requires_grad for p in module.parameters())
    assert all(not bn.training for bn in batchnorms(net.layer1))
    assert all(p.requires_grad for p in net.layer2.parameters())
    net.init_weights()
    out = net(torch.rand(2, 3, 32, 32))
    sum(o.mean() for o in out).backward()
    assert net.layer2.big[0].conv1.weight.grad is not None
    assert net.layer1.big[0].conv1.weight.grad is None
    # zero_init_residual: every block starts as its shortcut
    assert all(torch.all(b.norm3.weight == 0) for b in _blocks(net))

    net = BLRes2Net(norm_eval=True).train()
    assert all(not bn.training for bn in batchnorms(net))
    with pytest.raises(ValueError, match='is a Res2NetDLA variant'):
        BLRes2Net(arch='res2net_dla60')
    with pytest.raises(KeyError, match='invalid depth 26'):
        BLRes2Net(depth=26)
    with pytest.raises(IndexError, match='out of range'):
        BLRes2Net(out_indices=(4, ))
