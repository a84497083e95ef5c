"""The README's tables and first commands match the code.

The README links its details in docs/: the generated tables live in
docs/variants.md and docs/weights.md, and the text checks read the README
together with the docs/ pages.
"""
import re
from pathlib import Path

from res2net_mm.converters.published import WEIGHTS, weights_markdown
from res2net_mm.models.variants import variants_markdown

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / 'README.md').read_text()
VARIANTS_PAGE = (ROOT / 'docs' / 'variants.md').read_text()
WEIGHTS_PAGE = (ROOT / 'docs' / 'weights.md').read_text()
TEXT = '\n'.join([README] + [page.read_text() for page in
                             sorted((ROOT / 'docs').glob('*.md'))])


def between(text, name):
    start, end = f'<!-- {name}:start -->', f'<!-- {name}:end -->'
    assert start in text and end in text, f'README lacks {start} ... {end}'
    return text.split(start, 1)[1].split(end, 1)[0].strip()


def test_variant_table_is_generated_from_the_code():
    assert between(VARIANTS_PAGE, 'variants') == variants_markdown(), (
        'README variant table is stale: regenerate it with '
        '`python tools/misc/variant_table.py`')


def test_weights_table_is_generated_from_the_code():
    assert between(WEIGHTS_PAGE, 'weights') == weights_markdown(), (
        'README weights table is stale: regenerate it with '
        '`python tools/misc/weights_table.py`')


def test_first_lines_give_the_two_commands():
    head = '\n'.join(README.splitlines()[:15])
    assert 'make demo' in head and 'make test' in head
    ci = (ROOT / '.ci' / 'run').read_text()
    assert 'make test' in ci


def test_weight_names_in_the_text_exist():
    names = set(re.findall(r'res2net_mm://([\w.-]+/[\w.-]+)', TEXT))
    assert names, 'README shows no res2net_mm:// name'
    assert names <= set(WEIGHTS), sorted(names - set(WEIGHTS))


def test_published_figures_in_the_text_are_the_tables():
    """Every '`source/name` top-1 / top-5' the README quotes is the table's."""
    quoted = re.findall(r'`(\w+/[\w.-]+)` (\d+\.\d+) / (\d+\.\d+)', TEXT)
    assert quoted
    for name, top1, top5 in quoted:
        w = WEIGHTS[name]
        assert (float(top1), float(top5)) == (w.top1, w.top5), name
