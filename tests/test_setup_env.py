"""tools/setup_env.sh: idempotent, and the tests run in the environment it
makes, keyed by exactly the files that environment is built from.

Runs on both stacks (``make test`` and ``make test-oldest``): the stack is
the one this interpreter's environment was made for.
"""
import hashlib
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = ROOT / 'requirements'
# What each stack installs (tools/setup_env.sh), hence what keys its venv.
KEY_FILES = {
    'main': ['build.txt', 'demo.txt', 'lock.txt', 'mim.txt', 'mminstall.txt',
             'runtime.txt', 'tests.txt', 'toolboxes.txt'],
    'oldest': ['lite.txt', 'lock-oldest.txt', 'runtime.txt'],
}
VENV_PREFIX = {'main': 'venv-py', 'oldest': 'venv-oldest-py'}
STACK = 'oldest' if Path(sys.prefix).name.startswith('venv-oldest-') \
    else 'main'


def _pin_hash(stack):
    pins = b''.join((REQUIREMENTS / name).read_bytes()
                    for name in KEY_FILES[stack])
    return hashlib.sha256(pins).hexdigest()[:12]


def test_second_run_reuses_the_environment():
    out = subprocess.run(['bash', str(ROOT / 'tools' / 'setup_env.sh'),
                          STACK], capture_output=True, text=True, check=True)
    venv = out.stdout.strip().splitlines()[-1]
    assert Path(venv).resolve() == Path(sys.prefix).resolve()
    assert 'is ready' in out.stderr
    assert 'building mmcv' not in out.stderr
    assert 'creating virtual environment' not in out.stderr


def test_environment_is_keyed_by_the_files_it_is_built_from():
    name = Path(sys.prefix).name
    assert name.startswith(VENV_PREFIX[STACK])
    assert name.endswith(_pin_hash(STACK))
    assert not Path(sys.prefix).resolve().is_relative_to(ROOT)


def test_key_files_are_what_the_script_installs():
    """The script's KEY_FILES are this test's, every requirements file keys
    at least one stack (an edit cannot leave a stale environment), and the
    stacks key each other's lock files not at all (a change to one lock
    does not rebuild the other)."""
    script = (ROOT / 'tools' / 'setup_env.sh').read_text()
    declared = {
        stack: sorted(files.split())
        for stack, files in re.findall(
            r'^\s*(\w+)\)\s*\n\s*KEY_FILES=\(([^)]*)\)', script, re.M)
    }
    assert declared == {k: sorted(v) for k, v in KEY_FILES.items()}
    for name in {n for files in KEY_FILES.values() for n in files}:
        assert f'"$REQ/{name}"' in script, f'{name} keys a venv, unused'
    every = sorted(p.name for p in REQUIREMENTS.glob('*.txt'))
    assert sorted({n for f in KEY_FILES.values() for n in f}) == every
    assert 'lock-oldest.txt' not in KEY_FILES['main']
    assert 'lock.txt' not in KEY_FILES['oldest']
