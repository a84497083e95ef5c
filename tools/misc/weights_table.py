"""Print the published-weights table as markdown (the README's "Weights")."""
from res2net_mm.converters.published import weights_markdown

if __name__ == '__main__':
    print(weights_markdown())
