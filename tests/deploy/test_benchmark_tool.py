"""Smoke test of tools/analysis_tools/benchmark.py (no timing assertions)."""
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def test_benchmark_runs_and_reports_ratios(tmp_path):
    sys.path.insert(0, os.path.join(REPO, 'tools', 'analysis_tools'))
    try:
        import benchmark
    finally:
        sys.path.pop(0)
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
    assert all(v is not None and v > 0
               for v in result['memory_mib'].values())
    assert set(result['memory_mib']) == {
        f'{m}/cl' for m in ('ours-26w4s', 'timm-26w4s', 'timm-resnet50')}
