import os
import os.path as osp
import platform
import shutil
import sys
import warnings

from setuptools import find_packages, setup

ROOT = osp.dirname(osp.abspath(__file__))
# Shipped inside the package under res2net_mm/.mim, where mim looks for them
# (`mim search res2net_mm`, `mim train res2net_mm CONFIG`), as OpenMMLab's
# toolboxes ship theirs.
MIM_FILES = ('configs', 'tools', 'model-index.yml')


def read_requirements(path):
    """Requirement lines of ``path`` without comments and blank lines."""
    with open(osp.join(ROOT, path)) as f:
        return [
            line.split('#')[0].strip() for line in f
            if line.split('#')[0].strip()
        ]


def read_version():
    namespace = {}
    with open(osp.join(ROOT, 'res2net_mm', 'version.py')) as f:
        exec(f.read(), namespace)
    return namespace['__version__']


def add_mim_extension():
    """Put configs, tools and model-index.yml into ``res2net_mm/.mim``.

    As mmdet's and mmpretrain's ``setup.py``: an editable install
    (``pip install -e .``) links them, so that edits show at once; a wheel or
    an sdist gets copies. Other commands (e.g. metadata only) leave ``.mim``
    as it is.
    """
    if 'develop' in sys.argv or 'editable_wheel' in sys.argv:
        mode = 'copy' if platform.system() == 'Windows' else 'symlink'
    elif 'sdist' in sys.argv or 'bdist_wheel' in sys.argv:
        mode = 'copy'
    else:
        return
    mim_path = osp.join(ROOT, 'res2net_mm', '.mim')
    os.makedirs(mim_path, exist_ok=True)
    for name in MIM_FILES:
        src = osp.join(ROOT, name)
        dst = osp.join(mim_path, name)
        if not osp.exists(src):
            # A wheel built from our sdist: the sdist holds the copies only.
            if not osp.exists(dst):
                warnings.warn(f'{src} is missing: it is not shipped in .mim')
            continue
        if osp.islink(dst) or osp.isfile(dst):
            os.remove(dst)
        elif osp.isdir(dst):
            shutil.rmtree(dst)
        if mode == 'symlink':
            os.symlink(osp.relpath(src, mim_path), dst)
        elif osp.isdir(src):
            shutil.copytree(
                src, dst,
                ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
        else:
            shutil.copyfile(src, dst)


if __name__ == '__main__':
    add_mim_extension()
    setup(
        name='res2net_mm',
        version=read_version(),
        description='Res2Net backbones for the OpenMMLab 2.x ecosystem '
        '(mmpretrain, mmdet)',
        long_description=open(osp.join(ROOT, 'README.md')).read(),
        long_description_content_type='text/markdown',
        packages=find_packages(exclude=('tests', 'tests.*', 'tools',
                                        'configs')),
        # MANIFEST.in names the .mim files; they ship inside the package.
        include_package_data=True,
        python_requires='>=3.8',
        # Ranges only (requirements/runtime.txt). mmcv is not here, as in
        # mmdet and mmpretrain: a hard `mmcv` would make pip compile it for
        # users who run mmcv-lite or a prebuilt mmcv. It is the `mim` extra.
        install_requires=read_requirements('requirements/runtime.txt'),
        extras_require={
            'mim': read_requirements('requirements/mminstall.txt'),
            # mmcv.cnn without compiled ops: enough for the backbone.
            'lite': read_requirements('requirements/lite.txt'),
            'toolboxes': read_requirements('requirements/toolboxes.txt'),
            'demo': read_requirements('requirements/demo.txt'),
            'tests': read_requirements('requirements/tests.txt'),
        },
        license='Apache License 2.0',
        zip_safe=False,
    )
