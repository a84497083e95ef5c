"""``res2net_mm://NAME``: download once, verified, from a local server.

The files are written by timm, mmpretrain, mmdet and MindSpore themselves
(small widths), served by an HTTP server on 127.0.0.1 and registered in the
weights table under test-only names with their real sha256. The server counts
requests, can drop the connection mid-file and answer with errors; a closed
port stands for a machine without network.
"""
import hashlib
import http.server
import os
import threading

import pytest
import torch

from res2net_mm import BLRes2Net, Res2Net, Res2NetDLA
from res2net_mm.converters import FROM_FORMAT, load_checkpoint_any
from res2net_mm.converters import download as dl
from res2net_mm.converters.download import DownloadError, fetch_weights
from res2net_mm.converters.errors import CheckpointError
from res2net_mm.converters.published import WEIGHTS, PublishedWeights

from ..models.utils import free_port
from .test_library_files import small_detector_cfg
from .utils import TINY_V1B, build_in_scope, randomize, run_tool

# A timm Res2Net with small stages (16..128 planes, 7x7 stem of 64) and the
# same architecture in res2net_mm (whose base_width is relative to
# base_channels, timm's to 64).
TIMM_TINY = dict(layers=(2, 2, 2, 2), base_width=16,
                 channels=(16, 32, 64, 128))
OURS_TINY = dict(depth=26, base_width=4, base_channels=16, stem_channels=64)
# mmpretrain's and mmdet's Res2Net (depth 50, the smallest they know), small.
SMALL_V1B = dict(depth=50, scales=4, base_width=4, base_channels=16)


def sha256(path):
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


class FileServer:
    """HTTP on 127.0.0.1 (port chosen by the OS) serving ``files``.

    ``truncate``: paths sent with their full Content-Length but only half the
    bytes, then the connection is closed. ``status``: paths answered with that
    HTTP error. ``requests``: every path asked for.
    """

    def __init__(self):
        self.files, self.truncate, self.status = {}, set(), {}
        self.requests = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):

            def do_GET(self):
                path = self.path.lstrip('/')
                outer.requests.append(path)
                if path in outer.status:
                    self.send_error(outer.status[path])
                    return
                if path not in outer.files:
                    self.send_error(404, 'Not Found')
                    return
                data = outer.files[path]
                self.send_response(200)
                self.send_header('Content-Length', str(len(data)))
                self.end_headers()
                if path in outer.truncate:
                    data = data[:len(data) // 2]
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0),
                                                     Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs=dict(poll_interval=0.05),
                                       daemon=True)
        self.thread.start()

    def url(self, path):
        return f'http://127.0.0.1:{self.httpd.server_port}/{path}'

    def serve(self, path, file):
        with open(file, 'rb') as f:
            self.files[path] = f.read()
        return self.url(path)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = FileServer()
    yield s
    s.close()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty torch hub cache ($TORCH_HOME) and no mirror configured."""
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    monkeypatch.delenv(dl.MIRROR_ENV, raising=False)
    folder = tmp_path / 'torch_home' / 'hub' / 'checkpoints'
    assert dl.cache_dir() == str(folder)
    return folder


def cached_files(folder):
    """Everything in the cache folder, temporary files included."""
    return sorted(os.listdir(folder)) if folder.exists() else []


@pytest.fixture
def register(monkeypatch):
    """Put a test-only entry into the weights table for this test only."""

    def add(name, file, url, container, naming, arch='res2net50_26w_4s',
            sha=None, kind='full', filename=None):
        entry = PublishedWeights(
            f'test/{name}', arch, 'timm', url, container, naming,
            sha if sha is not None else sha256(file), kind,
            'ImageNet-1k classification', name, filename=filename)
        monkeypatch.setitem(WEIGHTS, entry.name, entry)
        return entry

    return add


@pytest.fixture(scope='module')
def timm_file(tmp_path_factory):
    """timm's own hub file (``save_for_hf``: model.safetensors)."""
    import timm
    from timm.models import save_for_hf
    net = randomize(timm.create_model('res2net50_26w_4s', **TIMM_TINY))
    folder = tmp_path_factory.mktemp('timm')
    save_for_hf(net, folder, safe_serialization=True)
    return folder / 'model.safetensors', net.state_dict()


@pytest.fixture(scope='module')
def mmpretrain_file(tmp_path_factory):
    """A whole mmpretrain ImageClassifier, saved by mmengine."""
    from mmengine.runner import save_checkpoint
    model = randomize(build_in_scope('mmpretrain', dict(
        type='ImageClassifier',
        backbone=dict(type='Res2Net', deep_stem=True, avg_down=True,
                      stem_channels=16, **SMALL_V1B),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=5, in_channels=512))))
    path = tmp_path_factory.mktemp('mmpretrain') / 'classifier.pth'
    save_checkpoint(dict(meta=dict(epoch=1), state_dict=model.state_dict()),
                    str(path))
    return path, model


def mmdet_detector(backbone):
    cfg = small_detector_cfg(backbone)
    cfg['neck']['in_channels'] = [64, 128, 256, 512]
    return build_in_scope('mmdet', cfg)


@pytest.fixture(scope='module')
def mmdet_file(tmp_path_factory):
    """A whole mmdet RetinaNet with mmdet's Res2Net, saved by mmengine."""
    from mmengine.runner import save_checkpoint
    detector = randomize(mmdet_detector(
        dict(type='Res2Net', out_indices=(0, 1, 2, 3), **SMALL_V1B)))
    path = tmp_path_factory.mktemp('mmdet') / 'retinanet.pth'
    save_checkpoint(dict(meta=dict(epoch=12),
                         state_dict=detector.state_dict()), str(path))
    return path, detector


@pytest.fixture(scope='module')
def mindspore_file(tmp_path_factory):
    """A MindSpore .ckpt written by MindSpore (MindCV names, small widths)."""
    import mindspore as ms

    from res2net_mm.converters import save_checkpoint_as
    state = randomize(Res2Net(**TINY_V1B)).state_dict()
    folder = tmp_path_factory.mktemp('mindspore')
    ours = save_checkpoint_as(state, folder / 'ours.ckpt', 'mindcv')[0]
    params = ms.load_checkpoint(ours)
    path = folder / 'tiny-mindcv.ckpt'
    ms.save_checkpoint([{'name': k, 'data': v} for k, v in params.items()],
                       str(path))
    return path, state


# ---- download, cache, failures ------------------------------------------

def test_first_download_then_cache_without_network(server, cache, register,
                                                   timm_file, capsys):
    file, _ = timm_file
    entry = register('timm-tiny', file, server.serve('hub/model.safetensors',
                                                      file), 'safetensors',
                     'timm', filename='timm-tiny.safetensors')
    path = fetch_weights('res2net_mm://test/timm-tiny', progress=True)
    assert path == str(cache / 'timm-tiny.safetensors')
    assert sha256(path) == entry.sha256
    assert server.requests == ['hub/model.safetensors']
    assert cached_files(cache) == ['timm-tiny.safetensors']
    assert 'Downloading (publisher)' in capsys.readouterr().err
    # second use: from the cache, no request (the server is gone)
    server.close()
    assert fetch_weights('test/timm-tiny') == path
    assert server.requests == ['hub/model.safetensors']


def test_prefix_hash_and_unpublished_hash(server, cache, register,
                                          timm_file):
    file, _ = timm_file
    url = server.serve('a.safetensors', file)
    register('prefix', file, url, 'safetensors', 'timm',
             sha=sha256(file)[:8], kind='prefix', filename='p.safetensors')
    register('none', file, url, 'safetensors', 'timm', sha=None,
             kind='unpublished', filename='n.safetensors')
    assert sha256(fetch_weights('test/prefix')) == sha256(file)
    assert sha256(fetch_weights('test/none')) == sha256(file)


def test_hash_mismatch_is_refused_and_nothing_cached(server, cache, register,
                                                     timm_file):
    file, _ = timm_file
    url = server.serve('model.safetensors', file)
    wrong = '0' * 64
    register('bad', file, url, 'safetensors', 'timm', sha=wrong)
    with pytest.raises(DownloadError) as e:
        fetch_weights('test/bad')
    assert e.value.kind == 'hash'
    message = str(e.value)
    assert sha256(file) in message and wrong in message
    assert 'nothing was written' in message and 'retry' in message
    assert '\n' not in message
    assert cached_files(cache) == []  # not even a temporary file


def test_wrong_container_is_refused(server, cache, register, timm_file,
                                    mmdet_file):
    file, _ = mmdet_file  # a torch file where the table says safetensors
    register('not-safetensors', file, server.serve('x.safetensors', file),
             'safetensors', 'timm', filename='x.safetensors')
    with pytest.raises(DownloadError, match='the file is torch, the table '
                       'says safetensors') as e:
        fetch_weights('test/not-safetensors')
    assert e.value.kind == 'container'
    assert cached_files(cache) == []


def test_connection_dropped_mid_file(server, cache, register, timm_file):
    file, _ = timm_file
    url = server.serve('model.safetensors', file)
    server.truncate.add('model.safetensors')
    # no hash to catch it: the byte count alone must
    register('cut', file, url, 'safetensors', 'timm', sha=None,
             kind='unpublished')
    size = os.path.getsize(file)
    with pytest.raises(DownloadError) as e:
        fetch_weights('test/cut')
    assert e.value.kind == 'truncated'
    assert f'closed after {size // 2} of {size} bytes' in str(e.value)
    assert 'Retry' in str(e.value)
    assert cached_files(cache) == []


@pytest.mark.parametrize('code,kind', [(404, 'missing'), (503, 'http')])
def test_server_errors(server, cache, register, timm_file, code, kind):
    file, _ = timm_file
    url = server.serve('model.safetensors', file)
    server.status['model.safetensors'] = code
    register('gone', file, url, 'safetensors', 'timm')
    with pytest.raises(DownloadError, match=f'HTTP {code}') as e:
        fetch_weights('test/gone')
    assert e.value.kind == kind
    assert dl.MIRROR_ENV in str(e.value)  # what to do
    assert cached_files(cache) == []


def test_offline_without_mirror(cache, register, timm_file):
    file, _ = timm_file
    dead = f'http://127.0.0.1:{free_port()}/model.safetensors'
    register('offline', file, dead, 'safetensors', 'timm')
    with pytest.raises(DownloadError) as e:
        fetch_weights('test/offline')
    assert e.value.kind == 'offline'
    assert 'cannot connect' in str(e.value)
    assert f'set {dl.MIRROR_ENV}' in str(e.value)
    assert cached_files(cache) == []


def test_mirror_folder_before_the_publisher(server, cache, register,
                                            timm_file, tmp_path, monkeypatch):
    file, _ = timm_file
    mirror = tmp_path / 'mirror'
    mirror.mkdir()
    entry = register('mirrored', file, server.serve('model.safetensors',
                                                    file), 'safetensors',
                     'timm', filename='mirrored.safetensors')
    (mirror / entry.file_name).write_bytes(file.read_bytes())
    monkeypatch.setenv(dl.MIRROR_ENV, str(mirror))
    assert sha256(fetch_weights('test/mirrored')) == entry.sha256
    assert server.requests == []  # the publisher was not asked


def test_bad_mirror_file_falls_back_to_the_publisher(server, cache, register,
                                                     timm_file, tmp_path,
                                                     monkeypatch):
    import mmengine.logging
    warnings = []
    monkeypatch.setattr(mmengine.logging, 'print_log',
                        lambda msg, **kw: warnings.append(msg))
    file, _ = timm_file
    mirror = tmp_path / 'mirror'
    mirror.mkdir()
    entry = register('fallback', file, server.serve('model.safetensors',
                                                    file), 'safetensors',
                     'timm', filename='fallback.safetensors')
    (mirror / entry.file_name).write_bytes(b'not the file')
    path = fetch_weights('test/fallback', mirror=str(mirror))
    assert sha256(path) == entry.sha256
    assert server.requests == ['model.safetensors']
    assert len(warnings) == 1
    assert 'the published sha256 is' in warnings[0]
    assert 'got it from http://127.0.0.1' in warnings[0]


def test_mirror_url_and_offline_publisher(server, cache, register, timm_file,
                                          monkeypatch):
    file, _ = timm_file
    dead = f'http://127.0.0.1:{free_port()}/model.safetensors'
    entry = register('url-mirror', file, dead, 'safetensors', 'timm',
                     filename='url mirror.safetensors')  # quoted in the URL
    server.serve('weights/url%20mirror.safetensors', file)
    monkeypatch.setenv(dl.MIRROR_ENV, server.url('weights/'))
    assert sha256(fetch_weights('test/url-mirror')) == entry.sha256
    assert server.requests == ['weights/url%20mirror.safetensors']
    # both sources fail: the error names each
    server.status['weights/url%20mirror.safetensors'] = 404
    os.remove(dl.cached_path(entry))
    with pytest.raises(DownloadError, match=r'1\) .*HTTP 404.*2\) .*cannot '
                       'connect'):
        fetch_weights('test/url-mirror')


def test_changed_cache_file_is_not_used(server, cache, register, timm_file):
    file, _ = timm_file
    register('changed', file, server.serve('model.safetensors', file),
             'safetensors', 'timm')
    path = fetch_weights('test/changed')
    with open(path, 'r+b') as f:
        f.seek(100)
        f.write(b'\x00\x01')
    with pytest.raises(DownloadError, match='changed after it was verified'
                       ) as e:
        fetch_weights('test/changed')
    assert e.value.kind == 'cache' and 'Delete it' in str(e.value)


def test_unknown_name():
    with pytest.raises(KeyError, match='Did you mean official/res2net50_26w'):
        fetch_weights('res2net_mm://official/res2net50_26w_4')
    from res2net_mm.converters import CheckpointError
    with pytest.raises(CheckpointError, match='unknown published weights'):
        load_checkpoint_any('res2net_mm://no/such')


# ---- res2net_mm:// wherever a checkpoint goes ----------------------------

def test_init_cfg_on_res2net(server, cache, register, timm_file):
    file, theirs = timm_file
    register('timm', file, server.serve('m.safetensors', file), 'safetensors',
             'timm')
    model = Res2Net(out_indices=(0, 1, 2, 3), init_cfg=dict(
        type='Pretrained', checkpoint='res2net_mm://test/timm'), **OURS_TINY)
    model.init_weights()
    expected = FROM_FORMAT['timm'](dict(theirs))
    for k, v in model.state_dict().items():
        assert torch.equal(v, expected[k]), k


def test_init_cfg_in_an_mmpretrain_config(server, cache, register,
                                          mmpretrain_file):
    file, theirs = mmpretrain_file
    register('mmpretrain', file, server.serve('c.pth', file), 'torch',
             'mmpretrain')
    model = build_in_scope('mmpretrain', dict(
        type='ImageClassifier',
        backbone=dict(type='res2net_mm.Res2Net', deep_stem=True,
                      avg_down=True, stem_channels=16, **SMALL_V1B,
                      init_cfg=dict(type='Pretrained',
                                    checkpoint='res2net_mm://test/mmpretrain',
                                    prefix='backbone.')),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=5, in_channels=512)))
    model.init_weights()
    model.eval()
    theirs.eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model.backbone(x)[-1], theirs.backbone(x)[-1],
                              rtol=1e-4, atol=1e-5)


def test_init_cfg_on_dla_and_blres2net(server, cache, register, tmp_path):
    """The other two backbones: DLA (its own loader) and bLRes2Net
    (mmengine's Pretrained init through the registered scheme)."""
    import timm
    dla = randomize(timm.create_model('dla60_res2next'))
    dla_file = tmp_path / 'dla.pth'
    torch.save(dla.state_dict(), dla_file)
    register('dla', dla_file, server.serve('dla.pth', dla_file), 'torch',
             'timm', arch='res2next_dla60')
    ours = Res2NetDLA(arch='res2next_dla60', init_cfg=dict(
        type='Pretrained', checkpoint='res2net_mm://test/dla'))
    ours.init_weights()
    theirs = dla.state_dict()
    for k, v in ours.state_dict().items():
        assert torch.equal(v, theirs[k]), k

    bl = randomize(BLRes2Net(base_width=4))
    bl_file = tmp_path / 'bl.pth'
    torch.save(bl.state_dict(), bl_file)
    register('bl', bl_file, server.serve('bl.pth', bl_file), 'torch',
             'official', arch='blres2net50')
    again = BLRes2Net(base_width=4, init_cfg=dict(
        type='Pretrained', checkpoint='res2net_mm://test/bl'))
    again.init_weights()
    for k, v in again.state_dict().items():
        assert torch.equal(v, bl.state_dict()[k]), k


def test_load_from_a_detector_via_mmengine(server, cache, register,
                                           mmdet_file):
    """``load_from`` / mmengine's ``load_checkpoint``: an mmdet detector file
    into the same detector with res2net_mm's backbone."""
    from mmengine.runner import load_checkpoint
    file, theirs = mmdet_file
    register('retinanet', file, server.serve('r.pth', file), 'torch',
             'mmdet', arch='res2net50_v1b')
    ours = mmdet_detector(dict(
        type='res2net_mm.Res2Net', out_indices=(0, 1, 2, 3), deep_stem=True,
        avg_down=True, stage_pool='strided', stem_channels=16, **SMALL_V1B))
    checkpoint = load_checkpoint(ours, 'res2net_mm://test/retinanet',
                                 strict=True)
    assert checkpoint['meta']['epoch'] == 12
    ours.eval()
    theirs.eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(ours.backbone(x), theirs.backbone(x), strict=True):
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)
    assert server.requests == ['r.pth']

    # the Runner's load_from (tools/train.py, tools/test.py): from the cache
    from mmengine.runner import Runner
    fresh = mmdet_detector(dict(
        type='res2net_mm.Res2Net', out_indices=(0, 1, 2, 3), deep_stem=True,
        avg_down=True, stage_pool='strided', stem_channels=16, **SMALL_V1B))
    runner = Runner(model=fresh, work_dir=str(cache.parent / 'work'),
                    load_from='res2net_mm://test/retinanet')
    runner.load_or_resume()
    for k, v in ours.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v), k
    assert server.requests == ['r.pth']


def test_convert_source_and_download_tool(server, cache, register,
                                          mindspore_file, tmp_path):
    file, state = mindspore_file
    entry = register('mindspore', file, server.serve('tiny-mindcv.ckpt',
                                                     file), 'mindspore_ckpt',
                     'mindcv')
    dst = tmp_path / 'native.pth'
    result = run_tool('convert.py', 'res2net_mm://test/mindspore', dst)
    assert result.returncode == 0, result.stderr
    assert 'mindcv naming (detected)' in result.stdout
    native, _ = load_checkpoint_any(dst)
    for k, v in state.items():
        if not k.endswith('num_batches_tracked'):
            assert torch.equal(native[k], v), k
    meta = torch.load(dst, weights_only=True)['meta']
    assert meta['source'] == 'res2net_mm://test/mindspore'

    # download.py: cached already (no new request); a verified copy
    copy = tmp_path / 'copy.ckpt'
    result = run_tool('download.py', 'test/mindspore', '--out', copy)
    assert result.returncode == 0, result.stderr
    assert 'sha256 full check passed' in result.stdout
    assert sha256(copy) == entry.sha256
    assert server.requests == ['tiny-mindcv.ckpt']
    # --out exists: refused without --force
    result = run_tool('download.py', 'test/mindspore', '--out', copy)
    assert result.returncode == 2 and 'exists' in result.stderr

    # a failure is one line on stderr and a non-zero exit
    os.remove(dl.cached_path(entry))
    server.status['tiny-mindcv.ckpt'] = 404
    result = run_tool('download.py', 'test/mindspore', '--out',
                      tmp_path / 'never.ckpt')
    assert result.returncode == 1
    assert result.stderr.count('\n') == 1 and 'HTTP 404' in result.stderr
    assert not (tmp_path / 'never.ckpt').exists()
    result = run_tool('download.py', 'no/such')
    assert result.returncode == 2
    assert result.stderr.startswith('error: unknown published weights')


def test_download_tool_converts_a_named_variant(server, cache, register,
                                                tmp_path):
    """--to goes through convert.py, with the entry's architecture enforced."""
    import timm
    from timm.models import save_for_hf
    net = randomize(timm.create_model('res2net50_26w_4s'))
    save_for_hf(net, tmp_path / 'hub', safe_serialization=True)
    file = tmp_path / 'hub' / 'model.safetensors'
    register('r50', file, server.serve('model.safetensors', file),
             'safetensors', 'timm', arch='res2net50_26w_4s',
             filename='r50.safetensors')
    out = tmp_path / 'r50.pth'
    result = run_tool('download.py', 'test/r50', '--out', out, '--to',
                      'native')
    assert result.returncode == 0, result.stderr
    assert 'timm naming (detected)' in result.stdout
    native, _ = load_checkpoint_any(out)
    expected = FROM_FORMAT['timm'](net.state_dict())
    assert sorted(native) == sorted(expected)
    assert all(torch.equal(native[k], v) for k, v in expected.items())
    # the wrong architecture is refused by convert.py (nothing written)
    register('r50-wrong', file, server.url('model.safetensors'),
             'safetensors', 'timm', arch='res2net101_26w_4s',
             filename='r50.safetensors')
    bad = tmp_path / 'bad.pth'
    result = run_tool('download.py', 'test/r50-wrong', '--out', bad, '--to',
                      'native')
    assert result.returncode == 1 and not bad.exists()
    assert 'res2net101_26w_4s' in result.stderr


def test_download_tool_lists_the_table():
    result = run_tool('download.py', '--list')
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ['name', 'source', 'format', 'top-1', '/',
                                'box', 'AP']
    assert len(lines) == 1 + len(WEIGHTS)
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:]}
    assert rows['official/res2net50_26w_4s'] == ['official', 'official',
                                                 'torch', '77.99']
    assert rows['mindcv/res2net101_v1b'][-1] == '81.14'
    assert rows['timm/res2net50d.in1k'][-1] == '80.280'
    assert rows['mmdet/htc_res2net-101_fpn_20e_coco'][-3:] == ['box', 'AP',
                                                              '47.5']


def test_unwritable_cache(server, cache, register, timm_file, monkeypatch):
    file, _ = timm_file
    register('nowrite', file, server.serve('model.safetensors', file),
             'safetensors', 'timm')
    cache.mkdir(parents=True)

    def full_disk(path, write):
        raise OSError(28, 'No space left on device')

    monkeypatch.setattr(dl, 'atomic_write', full_disk)
    with pytest.raises(DownloadError, match='No space left.*TORCH_HOME') as e:
        fetch_weights('test/nowrite')
    assert e.value.kind == 'write'
    assert cached_files(cache) == []


def test_mmengine_load_checkpoint_of_a_foreign_container(server, cache,
                                                         register, timm_file):
    """mmengine's own loaders read PyTorch files only: a safetensors entry
    given to load_checkpoint says what to use instead (torch's 'Weights only
    load failed' said nothing), and loads nothing."""
    from mmengine.runner import load_checkpoint
    file, _ = timm_file
    register('timm', file, server.serve('m.safetensors', file), 'safetensors',
             'timm')
    model = Res2Net(out_indices=(0, 1, 2, 3), **OURS_TINY)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(model, 'res2net_mm://test/timm')
    message = str(e.value)
    assert 'safetensors file' in message and 'tools/test.py' in message
    assert "init_cfg=dict(type='Pretrained'" in message
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_pretrained_shortcut_by_name(server, cache, register, timm_file):
    """``Res2Net(arch=..., pretrained='res2net_mm://NAME')``: mmdet's
    deprecated alias, the same mechanism as init_cfg (one code path)."""
    file, theirs = timm_file
    register('timm', file, server.serve('m.safetensors', file), 'safetensors',
             'timm')
    with pytest.warns(UserWarning, match='pretrained is deprecated'):
        model = Res2Net(out_indices=(0, 1, 2, 3),
                        pretrained='res2net_mm://test/timm', **OURS_TINY)
    assert model.init_cfg == dict(type='Pretrained',
                                  checkpoint='res2net_mm://test/timm')
    model.init_weights()
    expected = FROM_FORMAT['timm'](dict(theirs))
    for k, v in model.state_dict().items():
        assert torch.equal(v, expected[k]), k
    assert server.requests == ['m.safetensors']


def test_plain_urls_are_fetched_once_and_checked(server, cache, timm_file,
                                                 tmp_path):
    """http(s) and file URLs (init_cfg, convert.py) go through the same
    downloader as published weights: once into the cache, a hash prefix in
    the name checked, nothing left behind by a failure."""
    file, _ = timm_file
    digest = sha256(file)
    good = server.serve(f'w-{digest[:8]}.safetensors', file)
    assert dl.fetch_url(good) == str(cache / f'w-{digest[:8]}.safetensors')
    assert dl.fetch_url(good) == str(cache / f'w-{digest[:8]}.safetensors')
    assert server.requests == [f'w-{digest[:8]}.safetensors']
    wrong = '0' * 8 if not digest.startswith('0' * 8) else '1' * 8
    with pytest.raises(DownloadError, match='sha256 hash is .*name promises '
                       f'one starting with {wrong}') as e:
        dl.fetch_url(server.serve(f'x-{wrong}.safetensors', file))
    assert e.value.kind == 'hash'
    server.truncate.add('cut.safetensors')
    with pytest.raises(DownloadError, match='broke off|closed after') as e:
        dl.fetch_url(server.serve('cut.safetensors', file))
    assert e.value.kind == 'truncated'
    with pytest.raises(DownloadError, match='HTTP 404') as e:
        dl.fetch_url(server.url('gone.pth'))
    assert e.value.kind == 'missing'
    assert cached_files(cache) == [f'w-{digest[:8]}.safetensors']

    local = tmp_path / 'my weights.safetensors'
    local.write_bytes(file.read_bytes())
    assert dl.fetch_url(local.as_uri()) == str(cache / local.name)
    assert sha256(cache / local.name) == digest
    with pytest.raises(DownloadError, match='does not exist'):
        dl.fetch_url((tmp_path / 'none.pth').as_uri())
