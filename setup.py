from setuptools import find_packages, setup


def read_requirements(path):
    with open(path) as f:
        return [
            line.split('#')[0].strip() for line in f
            if line.split('#')[0].strip()
        ]


def read_version():
    namespace = {}
    with open('res2net_mm/version.py') as f:
        exec(f.read(), namespace)
    return namespace['__version__']


setup(
    name='res2net_mm',
    version=read_version(),
    description='Res2Net backbones for the OpenMMLab 2.x ecosystem '
    '(mmpretrain, mmdet)',
    long_description=open('README.md').read(),
    long_description_content_type='text/markdown',
    packages=find_packages(exclude=('tests', 'tools', 'configs')),
    python_requires='>=3.8',
    install_requires=read_requirements('requirements/runtime.txt'),
    extras_require={
        'mm': read_requirements('requirements/mminstall.txt'),
        'demo': read_requirements('requirements/demo.txt'),
        'tests': read_requirements('requirements/tests.txt'),
    },
    license='Apache License 2.0',
    zip_safe=False,
)
