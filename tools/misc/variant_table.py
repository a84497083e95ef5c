"""Print the named-variant table as markdown: the block between the
``<!-- variants:start -->`` / ``<!-- variants:end -->`` markers of
docs/variants.md (tests/test_readme.py checks that copy)."""
from res2net_mm.models.variants import variants_markdown

if __name__ == '__main__':
    print(variants_markdown())
