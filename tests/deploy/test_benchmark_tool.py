"""Smoke test of tools/analysis_tools/benchmark.py (no timing assertions)."""
import os

import torch

from ..models.utils import load_tool


def _benchmark():
    return load_tool('analysis_tools/benchmark.py')


def test_benchmark_runs_and_reports_ratios(tmp_path):
    benchmark = _benchmark()
    out = str(tmp_path / 'bench.json')
    result = benchmark.main([
        '--models', 'ours-26w4s', 'timm-26w4s', 'timm-resnet50', '--modes', 'train', 'deploy', '--memory-format',
        'cl', '--batch', '2', '--size', '32', '--reps', '2', '--warmup', '0',
        '--threads', '1', '--memory', '--json', out])
    assert os.path.isfile(out)
    cases = {(c['model'], c['mode']) for c in result['cases']}
    assert ('timm-26w4s', 'deploy') in cases
    assert all(len(c['times']) == 2 and c['imgs'] > 0
               for c in result['cases'])
    rows = {(r['model'], r['mode']): r for r in result['ratios']}
    train = rows[('ours-26w4s', 'train')]
    assert train['best_peer'] == 'timm-26w4s'
    assert train['vs_best_peer'] > 0 and train['vs_resnet50'] > 0
    # peak memory measured in a subprocess for every trained model
    assert all(v is not None and v['tensors'] > 0 and v['rss'] > 0
               for v in result['memory_mib'].values())
    assert train['peak_mem_mib'] == result['memory_mib']['ours-26w4s/cl'][
        'tensors']
    assert set(result['memory_mib']) == {
        f'{m}/cl' for m in ('ours-26w4s', 'timm-26w4s', 'timm-resnet50')}


def test_peak_tensor_bytes_follows_allocations_and_frees():
    """The peak of live tensor bytes: 3 MiB live at most, although 4 MiB
    are allocated in all."""
    benchmark = _benchmark()
    mib = 2**20
    with torch.profiler.profile(
            activities=[torch.profiler.ProfilerActivity.CPU],
            profile_memory=True) as prof:
        a = torch.empty(mib, dtype=torch.uint8)
        b = torch.empty(2 * mib, dtype=torch.uint8)
        del a
        c = torch.empty(mib, dtype=torch.uint8)
        del b, c
    assert benchmark.peak_tensor_bytes(prof) == 3 * mib


def test_ours_variants_differ_only_in_what_they_name():
    """``ours-26w4s`` is the default model (automatic channels_last),
    ``-nchw`` computes in the input's layout, ``-plain`` has no grouped stage
    convs."""
    models = _benchmark().MODELS
    default = models['ours-26w4s'][1]()
    nchw = models['ours-26w4s-nchw'][1]()
    plain = models['ours-26w4s-plain'][1]()
    x = torch.randn(1, 3, 32, 32)
    assert default.backbone._use_channels_last(x)
    assert not nchw.backbone._use_channels_last(x)
    blocks = [m for m in plain.modules() if hasattr(m, 'fast_path')]
    assert blocks and not any(b.fast_path for b in blocks)
    assert all(m[0] == '26w4s' for k, m in models.items()
               if k.startswith('ours-26w4s'))


def test_mfu_inputs_and_arithmetic():
    """What ``--device cuda`` reports as MFU, checked without a GPU: the
    forward FLOPs torch counts (2 x the MACs res2net_mm counts), the peak
    looked up by GPU name, and the utilisation formula."""
    import argparse

    import pytest
    from res2net_mm.utils import count_macs
    bench = _benchmark()
    flops = bench.forward_flops('ours-26w4s', argparse.Namespace(size=64))
    model = bench.MODELS['ours-26w4s'][1]().eval()
    assert flops == pytest.approx(2 * count_macs(model, (1, 3, 64, 64)),
                                  rel=0.01)
    assert bench.gpu_peak_tflops('NVIDIA H100 80GB HBM3') == 989.
    assert bench.gpu_peak_tflops('NVIDIA H100 80GB HBM3', 500.) == 500.
    assert bench.gpu_peak_tflops('Some Future GPU') is None
    # 1000 img/s x 4 GFLOP x 3 (train) over 120 TFLOP/s = 10%
    assert bench.mfu_percent(1000., 4e9, 'train', 120.) == pytest.approx(10.)
    assert bench.mfu_percent(1000., 4e9, 'eval', 120.) == pytest.approx(
        10. / 3)


def test_cuda_without_a_gpu_is_a_clear_error(capsys, monkeypatch):
    import pytest
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    with pytest.raises(SystemExit):
        _benchmark().parse_args(['--device', 'cuda'])
    assert 'torch sees no CUDA device' in capsys.readouterr().err
