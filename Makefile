# One-command entry points. Each target first makes sure the virtual environment
# exists (tools/setup_env.sh: seconds when nothing changed, ~15 min the first time).
SHELL := /bin/bash
PYTEST_ARGS ?= -n 2

.PHONY: env test demo

env:
	@bash tools/setup_env.sh >/dev/null

demo:
	@venv=$$(bash tools/setup_env.sh) && cd "$(CURDIR)" && \
		"$$venv/bin/python" tools/demo/classification.py && \
		"$$venv/bin/python" tools/demo/detection.py

test:
	@venv=$$(bash tools/setup_env.sh) && cd "$(CURDIR)" && \
		"$$venv/bin/python" -m pytest tests $(PYTEST_ARGS)
