"""Packaging: setup.py declares ranges, each stack's lock pins inside them,
and the wheel ships configs, tools and model-index.yml under
``res2net_mm/.mim`` for mim, as OpenMMLab's toolboxes do.

The wheel is built once per module from a copy of the clone (a wheel build
replaces the editable install's ``.mim`` links with copies, which must not
happen to the clone), installed with ``--target`` into a temporary folder
and put first on ``PYTHONPATH``: ``mim`` then finds that installed copy, as
it finds a ``pip install res2net_mm`` in a user's environment.
"""
import email
import os
import os.path as osp
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
REQ = ROOT / 'requirements'
# Files each stack installs (tools/setup_env.sh), and the lock pinning them.
STACKS = {
    'main': (['build.txt', 'demo.txt', 'mim.txt', 'mminstall.txt',
              'runtime.txt', 'tests.txt', 'toolboxes.txt'], 'lock.txt'),
    'oldest': (['lite.txt', 'runtime.txt'], 'lock-oldest.txt'),
}
LOCKS = {lock for _, lock in STACKS.values()}
EXTRAS = {'mim': 'mminstall.txt', 'lite': 'lite.txt',
          'toolboxes': 'toolboxes.txt', 'demo': 'demo.txt',
          'tests': 'tests.txt'}
DEMO_CONFIG = 'configs/demo/res2net26-tiny_1xb32_digits.py'


def requirements(name):
    """The requirements of ``requirements/<name>``, comments dropped."""
    lines = (line.split('#')[0].strip()
             for line in (REQ / name).read_text().splitlines())
    return [Requirement(line) for line in lines if line]


def lock_pins(name):
    """``{canonical name: Version}`` of a lock file; every line one exact
    pin (``==`` or PEP 440's ``===``)."""
    pins = {}
    for req in requirements(name):
        (spec, ) = req.specifier
        assert spec.operator in ('==', '==='), f'{name}: {req} is no pin'
        pins[canonicalize_name(req.name)] = Version(spec.version)
    return pins


def exact(req):
    return any(s.operator in ('==', '===') for s in req.specifier)


def test_declared_requirements_are_ranges():
    """No exact pin outside the locks: installing res2net_mm into an
    existing OpenMMLab environment keeps its torch, mmengine and mmcv."""
    for path in sorted(REQ.glob('*.txt')):
        if path.name not in LOCKS:
            pinned = [str(r) for r in requirements(path.name) if exact(r)]
            assert not pinned, f'{path.name} pins {pinned}'


def test_mmcv_is_an_extra_not_a_hard_requirement():
    """As mmdet and mmpretrain: a hard ``mmcv`` would make pip build mmcv
    from source for a user with a prebuilt mmcv or mmcv-lite."""
    names = {canonicalize_name(r.name) for r in requirements('runtime.txt')}
    assert {'torch', 'mmengine'} <= names
    assert not names & {'mmcv', 'mmcv-lite', 'mmcv-full', 'torchvision'}
    (mmcv, ) = requirements('mminstall.txt')
    (lite, ) = requirements('lite.txt')
    assert (mmcv.name, lite.name) == ('mmcv', 'mmcv-lite')
    assert mmcv.specifier == lite.specifier


@pytest.mark.parametrize('stack', sorted(STACKS))
def test_lock_pins_every_declared_package_inside_its_range(stack):
    """Every package a stack installs is pinned in its lock, and the pin
    satisfies each range declared for it (upper ends included)."""
    files, lock = STACKS[stack]
    pins = lock_pins(lock)
    for name in files:
        for req in requirements(name):
            key = canonicalize_name(req.name)
            assert key in pins, f'{name}: {req.name} is not pinned in {lock}'
            assert req.specifier.contains(pins[key], prereleases=True), \
                f'{lock} pins {req.name} {pins[key]}, {name} says {req}'


def test_oldest_lock_sits_at_the_lower_ends():
    """The oldest stack runs each package at the lower end the package
    claims (torch>=2.1: a 2.1 release; mmengine>=0.10.7: 0.10.7)."""
    pins = lock_pins('lock-oldest.txt')
    bounded = 0
    for name in STACKS['oldest'][0]:
        for req in requirements(name):
            for spec in req.specifier:
                if spec.operator == '>=':
                    low = Version(spec.version)
                    got = pins[canonicalize_name(req.name)]
                    assert got.release[:len(low.release)] == low.release, \
                        f'{req}: the oldest stack runs {got}'
                    bounded += 1
    assert bounded >= 3  # torch, mmengine, mmcv-lite


def test_main_lock_keeps_the_registry_torch():
    """``===``: PEP 440 exact match excludes the local ``+cpu`` build this
    machine's pip find-links offers (torchvision cannot load its ops)."""
    (torch_pin, ) = [r for r in requirements('lock.txt') if r.name == 'torch']
    assert str(torch_pin.specifier).startswith('===')


@pytest.fixture(scope='module')
def wheel(tmp_path_factory):
    """The wheel of a copy of this clone (tracked and untracked files that
    git does not ignore)."""
    tmp = tmp_path_factory.mktemp('wheel')
    files = subprocess.run(
        ['git', 'ls-files', '-z', '--cached', '--others',
         '--exclude-standard'],
        cwd=ROOT, capture_output=True, check=True).stdout.decode().split('\0')
    src = tmp / 'src'
    for rel in filter(None, files):
        if (ROOT / rel).is_file():  # not a deleted file
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            (src / rel).write_bytes((ROOT / rel).read_bytes())
    mim_before = sorted(os.listdir(ROOT / 'res2net_mm' / '.mim')) \
        if (ROOT / 'res2net_mm' / '.mim').is_dir() else None
    subprocess.run([
        sys.executable, '-m', 'pip', 'wheel', '-q', '--no-deps',
        '--no-build-isolation', '--no-index', '-w', str(tmp / 'dist'),
        str(src)
    ], check=True, capture_output=True)
    (path, ) = (tmp / 'dist').glob('res2net_mm-*.whl')
    # The clone's own .mim (links of the editable install) is untouched.
    assert (sorted(os.listdir(ROOT / 'res2net_mm' / '.mim'))
            if (ROOT / 'res2net_mm' / '.mim').is_dir() else None) == mim_before
    return path


def test_wheel_declares_the_ranges(wheel):
    with zipfile.ZipFile(wheel) as zf:
        (meta, ) = [n for n in zf.namelist()
                    if n.endswith('.dist-info/METADATA')]
        metadata = email.message_from_bytes(zf.read(meta))
    declared = [Requirement(r) for r in metadata.get_all('Requires-Dist')]
    assert not [str(r) for r in declared if exact(r)]
    hard = [r for r in declared if r.marker is None]
    assert sorted(map(str, hard)) == sorted(
        map(str, requirements('runtime.txt')))
    assert set(metadata.get_all('Provides-Extra')) == set(EXTRAS)
    for extra, name in EXTRAS.items():
        got = [r for r in declared
               if r.marker is not None and r.marker.evaluate({'extra': extra})]
        assert sorted(str(Requirement(f'{r.name}{r.specifier}'))
                      for r in got) == sorted(
                          map(str, requirements(name))), extra


def test_wheel_ships_configs_tools_and_model_index(wheel):
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        index = zf.read('res2net_mm/.mim/model-index.yml')
    assert index == (ROOT / 'model-index.yml').read_bytes()
    for folder in ('configs', 'tools'):
        shipped = [p for p in (ROOT / folder).rglob('*')
                   if p.is_file() and p.suffix in ('.py', '.yml', '.md',
                                                   '.sh')
                   and '__pycache__' not in p.parts]
        assert shipped
        for p in shipped:
            if folder == 'tools' and p.suffix in ('.yml', '.md'):
                continue
            rel = p.relative_to(ROOT).as_posix()
            assert f'res2net_mm/.mim/{rel}' in names, rel
    assert 'res2net_mm/.mim/tools/train.py' in names
    assert f'res2net_mm/.mim/{DEMO_CONFIG}' in names
    assert not [n for n in names if n.startswith('tests/')]


@pytest.fixture(scope='module')
def installed(wheel, tmp_path_factory):
    """The wheel installed into a folder of its own; the environment of a
    process that sees it before the editable install."""
    site = tmp_path_factory.mktemp('site')
    subprocess.run([
        sys.executable, '-m', 'pip', 'install', '-q', '--no-deps',
        '--no-index', '--target', str(site), str(wheel)
    ], check=True, capture_output=True)
    env = dict(os.environ, PYTHONPATH=str(site), OMP_NUM_THREADS='1',
               MKL_NUM_THREADS='1')
    return site, env


def run_mim(args, env, cwd, timeout=300):
    mim = osp.join(osp.dirname(sys.executable), 'mim')
    proc = subprocess.run([mim, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, \
        f'mim {" ".join(args)} failed:\n{proc.stdout[-3000:]}\n' \
        f'{proc.stderr[-5000:]}'
    return proc.stdout


def model_names():
    """Every model name of every metafile model-index.yml imports."""
    index = yaml.safe_load((ROOT / 'model-index.yml').read_text())
    names = []
    for rel in index['Import']:
        names += [m['Name'] for m in
                  yaml.safe_load((ROOT / rel).read_text())['Models']]
    return names


def test_mim_search_lists_the_models(installed, tmp_path):
    site, env = installed
    out = run_mim(['search', 'res2net_mm'], env, tmp_path)
    listed = {line.split(':', 1)[1].strip() for line in out.splitlines()
              if line.startswith('config id:')}
    classification = [m['Name'] for m in yaml.safe_load(
        (ROOT / 'configs/res2net/metafile.yml').read_text())['Models']]
    assert classification and set(classification) <= listed
    assert set(model_names()) == listed


def test_mim_train_runs_a_shipped_config(installed, tmp_path):
    """``mim train res2net_mm configs/demo/...`` from a folder without that
    path: mim finds the config and tools/train.py inside the installed
    package and trains one short epoch."""
    from tests.tools.toolhelp import tiny_digits_opts

    from res2net_mm.datasets import prepare_digits
    site, env = installed
    data = str(tmp_path / 'digits')
    prepare_digits(data)
    work_dir = tmp_path / 'work'
    run_dir = tmp_path / 'elsewhere'
    run_dir.mkdir()
    out = run_mim([
        'train', 'res2net_mm', DEMO_CONFIG, '--work-dir', str(work_dir),
        '--cfg-options', *tiny_digits_opts(
            data, num_train=32, num_val=16, max_epochs=1)
    ], env, run_dir)
    shipped = site / 'res2net_mm' / '.mim'
    assert f'will use {shipped / DEMO_CONFIG}' in out
    assert f'{shipped / "tools" / "train.py"}' in out
    assert (work_dir / 'epoch_1.pth').is_file()
    with open(work_dir / 'last_checkpoint') as f:
        assert f.read().strip().endswith('epoch_1.pth')
