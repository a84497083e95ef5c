# One-command entry points. Each target first makes sure its virtual environment
# exists (tools/setup_env.sh: seconds when nothing changed, ~15 min the first time).
SHELL := /bin/bash
PYTEST_ARGS ?= -n 2

# The oldest-stack leg (torch 2.1.2, mmengine 0.10.7, mmcv-lite 2.1.0; no toolboxes):
# the backbone with every fast path (or its fallback), converters, registry, configs,
# packaging. tests/oldest_stack.py deselects, by name and with the reason, what needs a
# toolbox or compiled mmcv ops, and fails the leg on any skip.
OLDEST_TESTS = \
	tests/test_setup_env.py tests/test_packaging.py \
	tests/models/test_torch_compat.py tests/models/test_fast_paths.py \
	tests/models/test_hierarchy.py tests/models/test_res2net.py \
	tests/models/test_layout.py tests/models/test_variants.py \
	tests/models/test_se_res2net.py tests/models/test_blres2net.py \
	tests/models/test_dla.py tests/models/test_registry.py \
	tests/converters/test_roundtrip.py tests/converters/test_safety.py \
	tests/converters/test_publish.py tests/converters/test_init_cfg.py \
	tests/configs/test_res2net_configs.py tests/deploy/test_deploy.py \
	tests/utils/test_complexity.py tests/converters/test_validation.py \
	tests/converters/test_download.py tests/deploy/test_deploy_structure.py \
	tests/test_dependencies.py tests/converters/test_weight_loaders.py \
	tests/utils/test_io.py

.PHONY: env env-oldest test test-oldest demo

env:
	@bash tools/setup_env.sh >/dev/null

env-oldest:
	@bash tools/setup_env.sh oldest >/dev/null

demo:
	@venv=$$(bash tools/setup_env.sh) && cd "$(CURDIR)" && \
		"$$venv/bin/python" tools/demo/classification.py && \
		"$$venv/bin/python" tools/demo/detection.py

test:
	@venv=$$(bash tools/setup_env.sh) && cd "$(CURDIR)" && \
		"$$venv/bin/python" -m pytest tests $(PYTEST_ARGS)

test-oldest:
	@venv=$$(bash tools/setup_env.sh oldest) && cd "$(CURDIR)" && \
		"$$venv/bin/python" -m pytest -p tests.oldest_stack $(OLDEST_TESTS) $(PYTEST_ARGS)
