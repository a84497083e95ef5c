"""Print the published-weights table as markdown: the block between the
``<!-- weights:start -->`` / ``<!-- weights:end -->`` markers of
docs/weights.md (tests/test_readme.py checks that copy)."""
from res2net_mm.converters.published import weights_markdown

if __name__ == '__main__':
    print(weights_markdown())
