"""pytest plugin of the oldest-stack leg (``make test-oldest``).

That leg runs an explicit list of test files (``OLDEST_TESTS`` in the
Makefile) on the oldest stack res2net_mm claims (requirements/lock-oldest.txt:
torch 2.1.2, mmengine 0.10.7, mmcv-lite 2.1.0, no toolboxes). Loaded with
``-p tests.oldest_stack``, this plugin

- deselects, by name, the tests of those files that need what that stack does
  not have (the reason is given for each; the main stack runs them all), and
  stops with an error if an entry names no collected test (no stale entries);
- turns every skip into a failure: a selected test must run, so a missing
  module cannot pass unnoticed as a skip.
"""
import pytest

MMPRETRAIN = 'needs mmpretrain (a toolbox: main stack only)'
MMDET = 'needs mmdet (a toolbox: main stack only)'
TOOLBOXES = 'needs mmpretrain and mmdet (toolboxes: main stack only)'
MMCV_OPS = ('needs compiled mmcv ops (deformable convs); mmcv-lite has none: '
            'the main stack builds mmcv 2.1.0')
MINDSPORE = ('writes a MindSpore .ckpt (mindspore: a reference library of the '
             'main stack only)')
OPENMIM = 'runs openmim (installed in the main stack only)'
NO_SAFE_GLOBALS = ('torch < 2.4 has no allow-list for weights_only loading '
                   '(torch.serialization.add_safe_globals / get_safe_globals)')

DESELECTED = {
    # classification configs: mmpretrain's registries, runner and get_flops
    'tests/configs/test_res2net_configs.py::test_config_trains_and_validates':
    MMPRETRAIN,
    'tests/configs/test_res2net_configs.py::'
    'test_get_flops_matches_variant_table': MMPRETRAIN,
    'tests/configs/test_res2net_configs.py::test_get_flops_command_line':
    MMPRETRAIN,
    'tests/converters/test_init_cfg.py::test_mmpretrain_config': MMPRETRAIN,
    'tests/converters/test_init_cfg.py::test_mmdet_config': MMDET,
    'tests/converters/test_init_cfg.py::test_dcn_backbone_from_plain_weights':
    MMCV_OPS,
    'tests/deploy/test_deploy.py::test_mmpretrain_image_classifier':
    MMPRETRAIN,
    'tests/deploy/test_deploy.py::test_mmdet_detector_backbone_and_neck':
    MMDET,
    'tests/deploy/test_deploy.py::test_dcn_stage_keeps_its_bn': MMCV_OPS,
    'tests/models/test_registry.py::test_builds_inside_mmpretrain_classifier':
    MMPRETRAIN,
    'tests/models/test_registry.py::'
    'test_builds_from_toolbox_registry_without_shadowing': TOOLBOXES,
    'tests/models/test_registry.py::'
    'test_scoped_type_resolves_in_fresh_process':
    TOOLBOXES,
    'tests/models/test_blres2net.py::'
    'test_contract_frozen_stages_norm_eval_registries_and_errors': TOOLBOXES,
    'tests/models/test_dla.py::test_multi_level_outputs_and_registries':
    TOOLBOXES,
    'tests/models/test_res2net.py::test_dcn_forward_backward': MMCV_OPS,
    'tests/models/test_res2net.py::test_dcn_fallback_on_stride': MMCV_OPS,
    'tests/models/test_layout.py::test_automatic_choice': MMCV_OPS,
    'tests/converters/test_safety.py::test_training_checkpoint_needs_trust':
    NO_SAFE_GLOBALS,
    'tests/converters/test_validation.py::test_init_cfg_in_a_detector_config':
    MMDET,
    'tests/converters/test_validation.py::'
    'test_mmpretrain_checkpoint_with_a_wrongly_shaped_tensor': MMPRETRAIN,
    'tests/converters/test_validation.py::'
    'test_mindspore_checkpoint_with_nan_and_inf': MINDSPORE,
    'tests/converters/test_download.py::test_wrong_container_is_refused':
    MMDET,
    'tests/converters/test_download.py::test_init_cfg_in_an_mmpretrain_config':
    MMPRETRAIN,
    'tests/converters/test_download.py::test_load_from_a_detector_via_mmengine':
    MMDET,
    'tests/converters/test_download.py::test_convert_source_and_download_tool':
    MINDSPORE,
    'tests/test_packaging.py::test_mim_search_lists_the_models': OPENMIM,
    'tests/test_packaging.py::test_mim_train_runs_a_shipped_config': OPENMIM,
}


def _function_id(item) -> str:
    """The node id without its parametrization: ``file.py::test_name``."""
    return item.nodeid.split('[', 1)[0]


def pytest_collection_modifyitems(config, items):
    used, kept, dropped = set(), [], []
    for item in items:
        name = _function_id(item)
        if name in DESELECTED:
            used.add(name)
            dropped.append(item)
        else:
            kept.append(item)
    collected_files = {item.nodeid.split('::', 1)[0] for item in items}
    stale = sorted(name for name in set(DESELECTED) - used
                   if name.split('::', 1)[0] in collected_files)
    if stale:
        raise pytest.UsageError(
            'tests/oldest_stack.py deselects tests that do not exist (renamed '
            'or removed? update DESELECTED): ' + ', '.join(stale))
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and not hasattr(report, 'wasxfail'):
        reason = report.longrepr[-1] if isinstance(report.longrepr,
                                                   tuple) else report.longrepr
        report.outcome = 'failed'
        report.longrepr = (
            f'{item.nodeid} was skipped on the oldest stack ({reason}); every '
            'test this leg selects must run there: install what it needs in '
            'requirements/lock-oldest.txt, or deselect it in '
            'tests/oldest_stack.py with the reason')


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """A whole file skipped at import (module-level ``importorskip``)."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped:
        report.outcome = 'failed'
        report.longrepr = (
            f'{collector.nodeid} was skipped at collection on the oldest '
            f'stack ({report.longrepr}); every file this leg selects must run '
            'there')
