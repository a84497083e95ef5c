"""Config helpers shared by the config tests."""


def plain(x):
    """Nested ConfigDicts as plain dicts, without the ``_scope_`` keys that
    ``package::`` inheritance adds."""
    if isinstance(x, dict):
        return {k: plain(v) for k, v in x.items() if k != '_scope_'}
    if isinstance(x, (list, tuple)):
        return type(x)(plain(v) for v in x)
    return x
