"""tools/setup_env.sh: idempotent, and the tests run in the environment it makes."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_second_run_reuses_the_environment():
    out = subprocess.run(['bash', str(ROOT / 'tools' / 'setup_env.sh')],
                         capture_output=True, text=True, check=True)
    venv = out.stdout.strip().splitlines()[-1]
    assert Path(venv).resolve() == Path(sys.prefix).resolve()
    assert 'is ready' in out.stderr
    assert 'building mmcv' not in out.stderr
    assert 'creating virtual environment' not in out.stderr


def test_environment_is_keyed_by_the_pins():
    import hashlib
    pins = b''.join(p.read_bytes()
                    for p in sorted((ROOT / 'requirements').glob('*.txt')))
    assert Path(sys.prefix).name.endswith(
        hashlib.sha256(pins).hexdigest()[:12])
    assert not Path(sys.prefix).resolve().is_relative_to(ROOT)
