#!/usr/bin/env bash
# Create or reuse a res2net_mm virtual environment, outside the clone.
#
#   tools/setup_env.sh          the main stack (make test, make demo): requirements/lock.txt
#   tools/setup_env.sh oldest   the oldest stack claimed (make test-oldest): requirements/lock-oldest.txt
#
# requirements/runtime.txt, mminstall.txt (mmcv) or lite.txt (mmcv-lite), toolboxes.txt, ...
# hold the RANGES the package declares (setup.py); each stack installs them together with
# its lock file as pip constraints (-c), so pip itself proves that the locked versions lie
# inside the declared ranges (tests/test_packaging.py checks it again, pin by pin).
# An environment lives in a cache directory keyed by a hash of exactly the files it is
# built from (KEY_FILES below), so every clone with the same pins shares it, a change to
# one stack's lock does not rebuild the other, and a second run takes seconds.
# mmcv 2.1.0 has no wheel for torch 2.13: the main stack builds it once from the sdist into
# a wheelhouse keyed by the torch version, because pip's own wheel cache is not keyed on
# torch and would silently reuse a wheel built against another.
#
# Prints the venv path on its last line (used by the Makefile).
# Env: RES2NET_MM_CACHE (default ~/.cache/res2net_mm), PYTHON (default python3).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REQ="$ROOT/requirements"
STACK=${1:-main}
case "$STACK" in
    main)
        KEY_FILES=(build.txt demo.txt lock.txt mim.txt mminstall.txt runtime.txt tests.txt toolboxes.txt)
        LOCK="$REQ/lock.txt"
        VENV_PREFIX=venv ;;
    oldest)
        KEY_FILES=(lite.txt lock-oldest.txt runtime.txt)
        LOCK="$REQ/lock-oldest.txt"
        VENV_PREFIX=venv-oldest ;;
    *)
        echo "usage: $0 [main|oldest] (got '$STACK')" >&2
        exit 2 ;;
esac
CACHE=${RES2NET_MM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/res2net_mm}
PY=${PYTHON:-python3}
PYVER=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
TORCH_VER=$(sed -n 's/^torch===*\([0-9.]*\).*/\1/p' "$LOCK")
PIN_HASH=$(cd "$REQ" && cat "${KEY_FILES[@]}" | sha256sum | cut -c1-12)
VENV="$CACHE/$VENV_PREFIX-py$PYVER-$PIN_HASH"
WHEELHOUSE="$CACHE/wheelhouse-torch$TORCH_VER-py$PYVER"
STAMP="$VENV/.res2net_mm_ready"

say() { echo "[setup_env] $*" >&2; }
# pip warns once per package that this machine's extra file:// indexes lack it: noise.
quiet_pip() { "$VENV/bin/python" -m pip "$@" 2> >(grep -v 'is ignored: it is neither' >&2); }

# One builder at a time: a second clone (or CI) waits here instead of installing
# into the same half-built environment.
mkdir -p "$CACHE"
# Each stack has its own lock (the main one keeps the historical name).
exec 9>"$CACHE/.lock$([[ $STACK == main ]] || echo "-$STACK")"
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

SECONDS=0
if [[ ! -x "$VENV/bin/python" ]]; then
    say "creating virtual environment $VENV (python $PYVER, $STACK stack)"
    "$PY" -m venv "$VENV"
fi
quiet_pip install -q --upgrade pip >&2

if [[ "$STACK" == main ]]; then
    say "installing build tools"
    quiet_pip install -q -r "$REQ/build.txt" -c "$LOCK" >&2
    say "installing torch $TORCH_VER, torchvision, numpy, mmengine (torch's CUDA build pulls ~5 GB, 1-2 min)"
    quiet_pip install -q -r "$REQ/runtime.txt" torchvision -c "$LOCK" >&2

    mkdir -p "$WHEELHOUSE"
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
        -r "$REQ/runtime.txt" -r "$REQ/mminstall.txt" -r "$REQ/toolboxes.txt" \
        -r "$REQ/demo.txt" -r "$REQ/tests.txt" -c "$LOCK" >&2
    quiet_pip install -q --no-deps -r "$REQ/mim.txt" -c "$LOCK" >&2
    quiet_pip install -q --no-deps --no-build-isolation -e "$ROOT" >&2
    "$VENV/bin/python" -c "import torch, torchvision, mmcv, mmengine, mmpretrain, mmdet, timm; \
print('torch', torch.__version__, 'mmcv', mmcv.__version__, 'mmpretrain', mmpretrain.__version__, 'mmdet', mmdet.__version__)" >&2
else
    # No compiled mmcv: mmcv-lite (no ops) and the toolbox-free tests (see the Makefile).
    say "installing the oldest stack: torch $TORCH_VER, mmcv-lite and the test tools (torch's CUDA build pulls ~3 GB)"
    quiet_pip install -q -r "$REQ/runtime.txt" -r "$REQ/lite.txt" -r "$LOCK" -c "$LOCK" >&2
    quiet_pip install -q --no-deps --no-build-isolation -e "$ROOT" >&2
    "$VENV/bin/python" -c "import torch, mmcv, mmengine, timm; \
print('torch', torch.__version__, 'mmcv(-lite)', mmcv.__version__, 'mmengine', mmengine.__version__, 'timm', timm.__version__)" >&2
fi
echo "$ROOT" > "$STAMP"
say "done in ${SECONDS}s: $VENV"
echo "$VENV"
