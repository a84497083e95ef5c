"""ONNX export of classifiers and multi-level backbones, checked with
onnxruntime (max relative error 1e-4), plain and deployed."""
import copy
import os

import pytest
import torch

from res2net_mm import Res2Net, Res2NetClassifier
from res2net_mm.deploy import fuse_res2net
from res2net_mm.deploy.onnx_export import check_onnx, export_onnx

from ..models.utils import TINY, load_tool, randomize


@pytest.mark.parametrize('deploy', [False, True], ids=['plain', 'deploy'])
def test_classifier_onnx_matches_torch(tmp_path, deploy):
    model = randomize(Res2NetClassifier(num_classes=5, **TINY,
                                        deep_stem=True, avg_down=True)).eval()
    if deploy:
        fuse_res2net(model)
    path = str(tmp_path / 'cls.onnx')
    info = export_onnx(model, path, size=(64, 48))
    assert info['outputs'] == ['logits'] and os.path.isfile(path)
    # batch 1 (traced) and 3: the batch axis is dynamic
    errors = check_onnx(model, path, [info['example'],
                                      torch.randn(3, 3, 64, 48)])
    assert errors['logits'] <= 1e-4


def test_backbone_multi_level_onnx_matches_torch(tmp_path):
    model = randomize(Res2Net(**TINY, out_indices=(0, 1, 2, 3))).eval()
    fuse_res2net(model)
    path = str(tmp_path / 'backbone.onnx')
    info = export_onnx(model, path, task='backbone', size=(64, 64))
    assert info['outputs'] == ['stage1', 'stage2', 'stage3', 'stage4']
    errors = check_onnx(model, path, [torch.randn(2, 3, 64, 64)],
                        task='backbone')
    assert set(errors) == set(info['outputs'])


def test_check_fails_on_a_different_model(tmp_path):
    """The onnxruntime check can fail: a model with other weights."""
    model = randomize(Res2NetClassifier(num_classes=5, **TINY)).eval()
    path = str(tmp_path / 'cls.onnx')
    export_onnx(model, path, size=(32, 32))
    other = randomize(copy.deepcopy(model), seed=1)
    with pytest.raises(AssertionError, match='differs from PyTorch'):
        check_onnx(other, path, [torch.randn(1, 3, 32, 32)])


def test_export_refuses_training_mode(tmp_path):
    model = Res2NetClassifier(num_classes=5, **TINY)
    with pytest.raises(ValueError, match='eval mode'):
        export_onnx(model, str(tmp_path / 'x.onnx'))
    assert not os.listdir(tmp_path)  # nothing half-written


def test_export_tool_cli(tmp_path, capsys):
    tool = load_tool('deployment/export_onnx.py')
    out = str(tmp_path / 'bb.onnx')
    tool.main(['res2net50_v1b_26w_4s', out, '--task', 'backbone',
               '--out-indices', '1', '3', '--size', '48', '--override',
               'depth=26', 'base_width=4', 'base_channels=16',
               'stem_channels=16'])
    text = capsys.readouterr().out
    assert 'onnxruntime check passed' in text and 'stage2' in text
    assert os.path.isfile(out)
