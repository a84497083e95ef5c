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
