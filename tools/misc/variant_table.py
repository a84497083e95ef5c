"""Print the named-variant table as markdown (the README's "Model zoo")."""
from res2net_mm.models.variants import variants_markdown

if __name__ == '__main__':
    print(variants_markdown())
