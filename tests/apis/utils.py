"""Helpers of the inference tests: fresh interpreters, config paths."""
import json
import os.path as osp
import subprocess
import sys
import textwrap

from tests.tools.toolhelp import REPO, tool_env

DET_CONFIG = osp.join(REPO, 'configs', 'detection', 'demo',
                      'mask-rcnn_res2net-tiny_fpn_synthetic-shapes.py')
NAMED_MODEL = 'res2net50_8xb32_in1k'
NAMED_CONFIG = osp.join(REPO, 'configs', 'res2net', f'{NAMED_MODEL}.py')


def run_python(code, *args, timeout=300, cwd=None):
    """Run ``code`` in a fresh interpreter; return what it printed last (JSON).

    The code runs with the environment of the tools (this interpreter, one
    thread); it imports res2net_mm only if it says so or its configs do.
    """
    proc = subprocess.run(
        [sys.executable, '-c', textwrap.dedent(code), *map(str, args)],
        cwd=cwd or REPO, env=tool_env(), capture_output=True, text=True,
        timeout=timeout)
    assert proc.returncode == 0, (
        f'exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}')
    # The last JSON value printed. Libraries print too ("Loads checkpoint
    # by ..."), and a progress bar may leave the JSON at the end of its line.
    for line in reversed(proc.stdout.splitlines()):
        for start in (i for i, c in enumerate(line) if c in '{['):
            try:
                return json.loads(line[start:])
            except ValueError:
                continue
    raise AssertionError(f'no JSON in the output:\n{proc.stdout[-3000:]}')


UNSAFE_GLOBALS = '''
    import json, sys, torch
    print(json.dumps({p: torch.serialization.get_unsafe_globals_in_checkpoint(p)
                      for p in sys.argv[1:]}))
'''


def unsafe_globals(*paths):
    """Globals of each checkpoint that torch's default weights_only refuses.

    Asked in a fresh process: the allow-list of this one (our tools' helpers
    extend it) must not hide anything.
    """
    return run_python(UNSAFE_GLOBALS, *paths)
