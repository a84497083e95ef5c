#!/usr/bin/env bash
# Create or reuse the res2net_mm virtual environment, outside the clone.
#
# The environment lives in a cache directory keyed by a hash of the pins (the files under
# requirements/), so every clone with the same pins shares it and a second
# run with nothing changed takes seconds. mmcv 2.1.0 has no wheel for torch 2.13: it is
# built once from the sdist into a wheelhouse keyed by the torch version, because pip's own
# wheel cache is not keyed on torch and would silently reuse a wheel built against another.
#
# Prints the venv path on its last line (used by the Makefile).
# Env: RES2NET_MM_CACHE (default ~/.cache/res2net_mm), PYTHON (default python3).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${RES2NET_MM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/res2net_mm}
PY=${PYTHON:-python3}
PYVER=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
TORCH_VER=$(sed -n 's/^torch===*\([0-9.]*\).*/\1/p' "$ROOT/requirements/runtime.txt")
PIN_HASH=$(cat "$ROOT"/requirements/*.txt | sha256sum | cut -c1-12)
VENV="$CACHE/venv-py$PYVER-$PIN_HASH"
WHEELHOUSE="$CACHE/wheelhouse-torch$TORCH_VER-py$PYVER"
STAMP="$VENV/.res2net_mm_ready"

say() { echo "[setup_env] $*" >&2; }
# pip warns once per package that this machine's extra file:// indexes lack it: noise.
quiet_pip() { "$VENV/bin/python" -m pip "$@" 2> >(grep -v 'is ignored: it is neither' >&2); }

# One builder at a time: a second clone (or CI) waits here instead of installing
# into the same half-built environment.
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9

if [[ -f "$STAMP" ]]; then
    # Same pins: only make sure this clone is the one installed in editable mode.
    if [[ "$(cat "$STAMP")" != "$ROOT" ]]; then
        say "environment $VENV is ready; installing this clone ($ROOT) in editable mode"
        "$VENV/bin/pip" install -q --no-deps --no-build-isolation -e "$ROOT" >&2
        echo "$ROOT" > "$STAMP"
    else
        say "environment $VENV is ready"
    fi
    echo "$VENV"
    exit 0
fi

mkdir -p "$WHEELHOUSE"
if [[ ! -x "$VENV/bin/python" ]]; then
    say "creating virtual environment $VENV (python $PYVER)"
    "$PY" -m venv "$VENV"
fi
quiet_pip install -q --upgrade pip >&2
say "installing build tools"
quiet_pip install -q -r "$ROOT/requirements/build.txt" >&2
say "installing torch $TORCH_VER, torchvision, numpy, mmengine (torch's CUDA build pulls ~5 GB, 1-2 min)"
grep -v '^mmcv' "$ROOT/requirements/runtime.txt" > "$VENV/runtime-no-mmcv.txt"
quiet_pip install -q -r "$VENV/runtime-no-mmcv.txt" >&2

if ! ls "$WHEELHOUSE"/mmcv-2.1.0-*.whl >/dev/null 2>&1; then
    say "building mmcv 2.1.0 from source against torch $TORCH_VER (CPU ops; about 10 minutes on 2 cores)"
    tmp=$(mktemp -d "$WHEELHOUSE/.build-XXXXXX")
    MAX_JOBS=${MAX_JOBS:-2} MMCV_WITH_OPS=1 FORCE_CUDA=0 \
        quiet_pip wheel --no-deps --no-build-isolation --no-cache-dir -w "$tmp" mmcv==2.1.0 >&2
    mv "$tmp"/mmcv-2.1.0-*.whl "$WHEELHOUSE/"   # rename into place: never a half-written wheel
    rm -rf "$tmp"
else
    say "reusing mmcv wheel from $WHEELHOUSE"
fi

say "installing mmcv, mmpretrain, mmdet, mmseg, demo and test requirements and res2net_mm (editable)"
quiet_pip install -q --find-links "$WHEELHOUSE" --only-binary mmcv \
    -r "$ROOT/requirements/runtime.txt" -r "$ROOT/requirements/mminstall.txt" \
    -r "$ROOT/requirements/demo.txt" -r "$ROOT/requirements/tests.txt" -c "$ROOT/requirements/runtime.txt" >&2
quiet_pip install -q --no-deps --no-build-isolation -e "$ROOT" >&2
"$VENV/bin/python" -c "import torch, torchvision, mmcv, mmengine, mmpretrain, mmdet, timm; \
print('torch', torch.__version__, 'mmcv', mmcv.__version__, 'mmpretrain', mmpretrain.__version__, 'mmdet', mmdet.__version__)" >&2
echo "$ROOT" > "$STAMP"
say "done: $VENV"
echo "$VENV"
