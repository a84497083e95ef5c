"""Dependencies flow one way: registry / variants / utils -> models -> deploy,
converters -> engine -> tools.

Read from the source with ``ast``, so an import hidden inside a function (the
usual way to dodge an import cycle) counts as much as one at the top, and so
does ``importlib.import_module('...')`` with a constant name.
"""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / 'res2net_mm'

# What the backbones must never import. Parametrised, one case per package,
# so that a case can be switched off with a mark while a move is under way.
MODELS_MUST_NOT_IMPORT = [
    'res2net_mm.converters',
    'res2net_mm.deploy',
    'res2net_mm.engine',
    'tools',
]
# Imports allowed inside a function: optional third-party dependencies the
# package works without (or, for mmcv.ops, a compiled part mmcv-lite lacks).
OPTIONAL = ('PIL', 'sklearn', 'onnx', 'onnxruntime', 'safetensors',
            'mmpretrain', 'mmdet', 'mmseg', 'mmcv.ops', 'mindspore')
SUBPACKAGES = sorted(p.name for p in PACKAGE.iterdir()
                     if (p / '__init__.py').is_file())


def module_name(path: pathlib.Path, root: pathlib.Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix('').parts)
    if parts[-1] == '__init__':
        parts.pop()
    return '.'.join(parts)


def imports(path: pathlib.Path, root: pathlib.Path = ROOT):
    """``(line, absolute module name, inside a function)`` of every import
    in a file under ``root``, relative ones resolved; ``from a import b``
    also yields ``a.b`` (``b`` may be a module)."""
    tree = ast.parse(path.read_text(), str(path))
    package = module_name(path, root).split('.')
    if path.name != '__init__.py':
        package.pop()
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(
                child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((child.lineno, a.name, nested)
                             for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = package[:len(package) - child.level + 1] \
                    if child.level else []
                name = '.'.join(base + ([child.module] if child.module
                                        else []))
                found.append((child.lineno, name, nested))
                found.extend((child.lineno, f'{name}.{a.name}', nested)
                             for a in child.names)
            elif (isinstance(child, ast.Call)
                  and getattr(child.func, 'attr',
                              getattr(child.func, 'id', None))
                  in ('import_module', '__import__') and child.args
                  and isinstance(child.args[0], ast.Constant)):
                found.append((child.lineno, child.args[0].value, nested))
            visit(child, nested)

    visit(tree, False)
    return found


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + '.')


def test_the_reader_sees_what_hides_in_functions(tmp_path):
    """Relative imports, ``from . import x``, imports in functions and
    importlib calls, on files written here."""
    folder = tmp_path / 'res2net_mm' / 'models'
    folder.mkdir(parents=True)
    (tmp_path / 'res2net_mm' / '__init__.py').write_text('')
    (folder / '__init__.py').write_text('from . import a\n')
    (folder / 'a.py').write_text(
        'import importlib\n'
        'def f():\n'
        '    from ..converters import loading\n'
        '    from .. import deploy\n'
        '    importlib.import_module("res2net_mm.engine")\n'
        'g = lambda: __import__("tools.train")\n')
    got = {(n, f) for _, n, f in imports(folder / 'a.py', tmp_path)}
    assert {('res2net_mm.converters', True),
            ('res2net_mm.converters.loading', True),
            ('res2net_mm.deploy', True), ('res2net_mm.engine', True),
            ('tools.train', True), ('importlib', False)} <= got
    assert ('res2net_mm.models.a', False) in {
        (n, f) for _, n, f in imports(folder / '__init__.py', tmp_path)}


@pytest.mark.parametrize('forbidden', MODELS_MUST_NOT_IMPORT)
def test_models_do_not_import(forbidden):
    """The backbones reach the weight loaders through
    ``res2net_mm.registry.WEIGHT_LOADERS``, never through an import."""
    bad = [f'{path.relative_to(ROOT)}:{line} imports {name}'
           + (' (inside a function)' if in_function else '')
           for path in sorted((PACKAGE / 'models').rglob('*.py'))
           for line, name, in_function in imports(path)
           if within(name, forbidden)]
    assert not bad, '\n'.join(bad)


@pytest.mark.parametrize('subpackage', SUBPACKAGES + ['.'])
def test_imports_inside_functions_are_optional_dependencies(subpackage):
    """Everything else is imported at the top of its module: an import in a
    function is for an optional dependency only, never to dodge a cycle."""
    files = sorted(PACKAGE.glob('*.py')) if subpackage == '.' else \
        sorted((PACKAGE / subpackage).rglob('*.py'))
    bad = [f'{path.relative_to(ROOT)}:{line} imports {name} inside a '
           'function'
           for path in files
           for line, name, in_function in imports(path)
           if in_function and not any(within(name, o) for o in OPTIONAL)]
    assert not bad, '\n'.join(bad)
