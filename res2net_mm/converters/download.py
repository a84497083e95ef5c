"""``res2net_mm://NAME``: published weights fetched once into a cache.

A name of :data:`~res2net_mm.converters.published.WEIGHTS` resolves to a local
file in torch hub's checkpoint folder (``torch.hub.get_dir()/checkpoints``,
i.e. ``$TORCH_HOME/hub/checkpoints``, where mmengine and torch keep downloads
too). The first use downloads it, with a progress bar, into a temporary name
in that folder; only when the whole file has arrived, its sha256 matches the
table and its container is the one the table names is it renamed into place.
Any failure (hash mismatch, connection dropped, server error, no network)
leaves nothing in the cache and raises :class:`DownloadError` saying what
happened and what to do. Later uses read the cached file (its hash checked
again) without any network.

``RES2NET_MM_WEIGHTS_MIRROR`` (a local folder or an http(s) base URL holding
the files under the names the table gives) is tried before the publisher's
URL, for machines without internet access; the same checks apply.

Plain ``http(s)://`` and ``file://`` URLs (``init_cfg``, ``convert.py``) are
fetched once into the same folder by :func:`fetch_url`, the same way; a hash
prefix in the file name (``-<hex>.pth``) is checked.

Conversion from the file's own format happens on load: the resolved path is
read by :func:`~res2net_mm.converters.loading.load_checkpoint_any`
(``init_cfg``, ``convert.py``) or by mmengine's loaders (``load_from=``,
``load_checkpoint``),
through the ``res2net_mm://`` scheme registered with mmengine's
``CheckpointLoader`` (:func:`register_checkpoint_scheme`).
"""
import hashlib
import http.client
import os
import re
import shutil
import socket
import sys
import urllib.error
import urllib.request
from typing import List, Optional, Tuple
from urllib.parse import quote, unquote, urlparse

import mmengine.logging
import torch.hub
from mmengine.runner.checkpoint import CheckpointLoader
from torch.hub import tqdm  # tqdm, or torch's stand-in without it

from ..utils.io import atomic_write
from ..version import __version__
from .container import sniff_container
from .errors import CheckpointError
from .published import SCHEME, PublishedWeights, get_weights

MIRROR_ENV = 'RES2NET_MM_WEIGHTS_MIRROR'
CHUNK = 1 << 20
TIMEOUT = 60  # seconds without data before a download is given up
_MIRROR_HINT = (f'On a machine without internet access, put the file in a '
                f'folder (or on a web server) and set {MIRROR_ENV} (or pass '
                f'--mirror) to it')


class DownloadError(CheckpointError):
    """Published weights could not be fetched or verified; nothing was cached.

    ``kind`` is what went wrong last: ``'hash'``, ``'truncated'``, ``'http'``,
    ``'missing'``, ``'offline'``, ``'container'``, ``'cache'`` (the cached
    file changed) or ``'write'`` (the cache folder cannot be written).
    """

    def __init__(self, path, problem: str, hint: str = '', kind: str = ''):
        super().__init__(path, problem, hint)
        self.kind = kind


class _Failed(Exception):
    """One source failed; the message says how."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def cache_dir() -> str:
    """``torch.hub.get_dir()/checkpoints`` (follows ``$TORCH_HOME``)."""
    return os.path.join(torch.hub.get_dir(), 'checkpoints')


def cached_path(weights: PublishedWeights, cache: Optional[str] = None) -> str:
    """Where ``weights`` lives (or will live) in the cache."""
    return os.path.join(cache or cache_dir(), weights.file_name)


def mirror_location(mirror: str, weights: PublishedWeights) -> str:
    """The file of ``weights`` in a mirror (folder, ``file://`` or URL)."""
    if mirror.startswith(('http://', 'https://')):
        return mirror.rstrip('/') + '/' + quote(weights.file_name)
    if mirror.startswith('file://'):
        mirror = urlparse(mirror).path
    return os.path.join(os.path.expanduser(mirror), weights.file_name)


def sources(weights: PublishedWeights,
            mirror: Optional[str] = None) -> List[Tuple[str, str]]:
    """``[(label, location)]`` to try in order: the mirror, then the URL.

    Args:
        weights (PublishedWeights): The entry.
        mirror (str, optional): Folder or base URL; defaults to
            ``$RES2NET_MM_WEIGHTS_MIRROR``. An empty string means none.
    """
    if mirror is None:
        mirror = os.environ.get(MIRROR_ENV, '')
    found = []
    if mirror:
        found.append(('mirror', mirror_location(mirror, weights)))
    found.append(('publisher', weights.url))
    return found


def _open(location: str):
    """``(stream, size or None)`` of a URL or a local file."""
    if not location.startswith(('http://', 'https://')):
        if not os.path.isfile(location):
            raise _Failed('missing', f'{location} does not exist')
        return open(location, 'rb'), os.path.getsize(location)
    request = urllib.request.Request(
        location, headers={'User-Agent': f'res2net_mm/{__version__}'})
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT)
    except urllib.error.HTTPError as e:
        e.close()
        kind = 'missing' if e.code == 404 else 'http'
        raise _Failed(kind, f'{location}: the server answered HTTP {e.code} '
                      f'{e.reason}') from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, 'reason', e)
        raise _Failed('offline', f'{location}: cannot connect ({reason})') \
            from None
    length = response.headers.get('Content-Length')
    return response, int(length) if length and length.isdigit() else None


def _copy(location: str, tmp: str, progress: bool, label: str) -> str:
    """Stream ``location`` into ``tmp``; returns the sha256 hex digest."""
    stream, size = _open(location)
    digest, received = hashlib.sha256(), 0
    try:
        with stream, open(tmp, 'wb') as out, tqdm(
                total=size, disable=not progress, unit='B', unit_scale=True,
                unit_divisor=1024) as bar:
            if progress:
                sys.stderr.write(f'Downloading ({label}) {location}\n')
            while True:
                chunk = stream.read(CHUNK)
                if not chunk:
                    break
                out.write(chunk)
                digest.update(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    except (http.client.IncompleteRead, ConnectionError, socket.timeout,
            TimeoutError) as e:
        raise _Failed('truncated', f'{location}: the transfer broke off after '
                      f'{received} bytes ({type(e).__name__}: {e})') from None
    if size is not None and received != size:
        raise _Failed('truncated', f'{location}: the connection closed after '
                      f'{received} of {size} bytes')
    return digest.hexdigest()


def check_digest(weights: PublishedWeights, sha256: str) -> Optional[str]:
    """None if ``sha256`` is what the table expects, else the problem."""
    if weights.sha256_kind == 'unpublished':
        return None
    expected = weights.sha256.lower()
    ok = sha256 == expected if weights.sha256_kind == 'full' else \
        sha256.startswith(expected)
    if ok:
        return None
    what = 'sha256' if weights.sha256_kind == 'full' else 'sha256 prefix'
    return (f'its sha256 is {sha256}, the published {what} is {expected}')


def _check_container(weights: PublishedWeights, path: str, label: str):
    try:
        found = sniff_container(path)
    except CheckpointError as e:
        raise _Failed('container', f'{label}: {e.problem}') from None
    if found != weights.container:
        raise _Failed('container', f'{label}: the file is {found}, the table '
                      f'says {weights.container}')


def file_sha256(path: str) -> str:
    """sha256 hex digest of a file."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(CHUNK), b''):
            digest.update(chunk)
    return digest.hexdigest()


def _hint(kind: str, weights: PublishedWeights) -> str:
    """What the user can do after a failure of ``kind``."""
    return {
        'hash': 'The file is not the published one (corrupt or replaced): '
        'retry; if it persists, report it. Do not bypass the check',
        'truncated': 'Retry: the download starts again from the beginning',
        'container': 'The file is not the published one: retry; if it '
        'persists, report it',
        'missing': f'The publisher may have moved it; fetch it by hand (see '
        f'{weights.cited.split(";")[0]}) into a folder and point '
        f'{MIRROR_ENV} (or --mirror) at it',
    }.get(kind, f'Check the network and retry. {_MIRROR_HINT}')


def _cache_write_failed(source: str, dest: str,
                        error: OSError) -> DownloadError:
    """The cache side failed (permissions, full disk)."""
    return DownloadError(
        source, f'cannot write {os.path.basename(dest)} into '
        f'{os.path.dirname(dest)} ({error}); nothing was kept',
        'Free space there, or set TORCH_HOME to a writable folder',
        kind='write')


def fetch_weights(name: str,
                  mirror: Optional[str] = None,
                  progress: Optional[bool] = None,
                  cache: Optional[str] = None) -> str:
    """The local, verified file of a published entry (downloaded once).

    Args:
        name (str): Entry name, with or without ``res2net_mm://``.
        mirror (str, optional): Folder or base URL tried first; defaults to
            ``$RES2NET_MM_WEIGHTS_MIRROR``.
        progress (bool, optional): Show a progress bar; defaults to when
            stderr is a terminal.
        cache (str, optional): Cache folder; defaults to :func:`cache_dir`.

    Returns:
        str: The path of the cached file.

    Raises:
        DownloadError: Naming every source tried, what failed and what to do.
            Nothing is left in the cache.
        KeyError: For a name that is not in the table.
    """
    weights = get_weights(name)
    uri = SCHEME + weights.name
    dest = cached_path(weights, cache)
    if os.path.isfile(dest):
        _check_cached(weights, dest, uri)
        return dest
    if progress is None:
        progress = sys.stderr.isatty()
    tried = []
    for label, location in sources(weights, mirror):

        def write(tmp, label=label, location=location):
            sha256 = _copy(location, tmp, progress, label)
            problem = check_digest(weights, sha256)
            if problem:
                raise _Failed('hash', f'{location}: {problem}')
            _check_container(weights, tmp, location)

        try:
            atomic_write(dest, write)
        except _Failed as e:
            tried.append(e)
            continue
        except OSError as e:
            raise _cache_write_failed(uri, dest, e) from None
        if tried:
            mmengine.logging.print_log(
                f'{uri}: {"; ".join(map(str, tried))}; got it from '
                f'{location} instead', logger='current', level=30)
        return dest
    problems = '; '.join(f'{i + 1}) {e}' for i, e in enumerate(tried))
    raise DownloadError(
        uri, f'cannot fetch {weights.file_name}, nothing was written to '
        f'{os.path.dirname(dest)}. Tried {problems}',
        _hint(tried[-1].kind, weights), kind=tried[-1].kind)


def _check_cached(weights: PublishedWeights, path: str, uri: str) -> None:
    """A cached file is used only if it still has the published hash."""
    if weights.sha256_kind == 'unpublished':
        return
    problem = check_digest(weights, file_sha256(path))
    if problem:
        raise DownloadError(
            uri, f'the cached file {path} was changed after it was verified: '
            f'{problem}', 'Delete it; the next use downloads it again',
            kind='cache')


def resolve_uri(path) -> str:
    """``res2net_mm://NAME`` -> its cached file; anything else unchanged."""
    path = os.fspath(path)
    if not path.startswith(SCHEME):
        return path
    try:
        return fetch_weights(path)
    except KeyError as e:
        raise CheckpointError(path, e.args[0]) from None


def fetch_url(url: str,
              progress: Optional[bool] = None,
              cache: Optional[str] = None) -> str:
    """The local file of an ``http(s)://`` or ``file://`` URL, fetched once.

    It goes to the cache (:func:`cache_dir`) under the URL's base name the
    way published weights do (a temporary name, renamed when complete), and
    later calls read it from there. A name ending in ``-<hex digits>.<ext>``
    (the OpenMMLab / torch hub convention, see ``publish_model.py``) must be
    a prefix of the file's sha256.

    Args:
        url (str): The URL.
        progress (bool, optional): Show a progress bar; defaults to when
            stderr is a terminal.
        cache (str, optional): Cache folder; defaults to :func:`cache_dir`.

    Returns:
        str: The path of the cached file.

    Raises:
        DownloadError: Naming the URL and what failed (``kind`` as in
            :class:`DownloadError`); nothing is left in the cache.
    """
    parsed = urlparse(url)
    name = os.path.basename(unquote(parsed.path))
    dest = os.path.join(cache or cache_dir(), name)
    if os.path.isfile(dest):
        return dest
    if progress is None:
        progress = sys.stderr.isatty()
    location = unquote(parsed.path) if parsed.scheme == 'file' else url
    match = re.search(r'-([a-f0-9]{8,})\.', name)

    def write(tmp):
        sha256 = _copy(location, tmp, progress, 'URL')
        if match and not sha256.startswith(match.group(1)):
            raise _Failed('hash', f'{location}: its sha256 hash is {sha256}, '
                          f'its name promises one starting with '
                          f'{match.group(1)}')

    mmengine.logging.print_log(f'downloading {url} to {dest}',
                               logger='current')
    try:
        atomic_write(dest, write)
    except _Failed as e:
        hint = ('The file is not the one its name promises: check the URL'
                if e.kind == 'hash' else 'Check the URL and the network and '
                'retry')
        problem = str(e).removeprefix(f'{location}: ')
        raise DownloadError(url, f'download rejected: {problem}', hint,
                            kind=e.kind) from None
    except OSError as e:
        raise _cache_write_failed(url, dest, e) from None
    return dest


def load_from_res2net_mm(filename: str, map_location=None):
    """mmengine ``CheckpointLoader`` backend for ``res2net_mm://NAME``.

    The name resolves to its verified cached file, which is then loaded
    exactly as that local path would be (mmengine's local backend), so
    ``load_from='res2net_mm://NAME'`` means the same as the file itself.
    """
    path = resolve_uri(filename)
    container = sniff_container(path)
    if container != 'torch':
        # mmengine's loaders read PyTorch files and map no names; the
        # project's Runner (tools/train.py, tools/test.py) converts on load.
        raise CheckpointError(
            filename, f'is a {container} file ({path}); mmengine\'s '
            'load_checkpoint reads PyTorch files only',
            "Use res2net_mm's tools/train.py / tools/test.py (load_from "
            "converts it on load) or the backbone's init_cfg=dict("
            "type='Pretrained', checkpoint=...)")
    return CheckpointLoader.load_checkpoint(path, map_location=map_location)


def register_checkpoint_scheme() -> None:
    """Make mmengine's checkpoint loading (``load_from``, ``load_checkpoint``,
    ``Pretrained`` init, the toolboxes' inferencers) accept ``res2net_mm://``.
    Idempotent."""
    CheckpointLoader.register_scheme(
        prefixes=SCHEME, loader=load_from_res2net_mm, force=True)


def copy_atomically(src: str, dst: str) -> str:
    """Copy a file atomically (temporary name, then rename)."""
    return atomic_write(dst, lambda tmp: shutil.copyfile(src, tmp))


__all__ = ['DownloadError', 'MIRROR_ENV', 'cache_dir', 'cached_path',
           'fetch_weights', 'fetch_url', 'resolve_uri',
           'load_from_res2net_mm', 'register_checkpoint_scheme', 'sources',
           'mirror_location', 'file_sha256', 'check_digest',
           'copy_atomically']
