"""Side-by-side speed of res2net_mm's Res2Net-50 and its peers.

One interleaved run: every repetition times each (model, mode, memory format)
once, in turn, so background load hits all of them alike; the medians over
the repetitions are reported, with their spread. Modes:

- ``train``: forward + cross-entropy + backward + SGD step (train mode BN).
- ``eval``: forward in eval mode under ``torch.inference_mode``.
- ``deploy``: eval after BN folding: res2net_mm's ``switch_to_deploy`` (via
  :func:`res2net_mm.deploy.fuse_res2net`), mmcv's ``fuse_conv_bn`` for every
  peer (their best available path; it folds what it can).

On CPU res2net_mm computes in channels_last whatever the input's layout (its
``channels_last=None`` default; outputs come back in the input's layout), so
in the NCHW columns it runs other kernels than the peers; ``ours-26w4s-nchw``
turns that off, and the channels_last columns compare the same kernels.

Peers: mmpretrain's and mmdet's Res2Net backbones (with the same pooling and
linear head as timm's classifiers), timm's ``res2net50_26w_4s``,
``res2net50d`` and ``resnet50``. Ratios compare models of the same
architecture (26w_4s: ours / mmpretrain / timm; v1b = v1d: ours / mmdet /
timm ``res2net50d``) and every Res2Net against timm's ResNet-50.

Peak memory (``--memory``): each model trains in its own subprocess. The
primary figure is the peak of the bytes held by live tensors during one
training step (forward, backward, SGD step, starting with the gradients
freed), from the allocator's own records (the profiler's memory events on
CPU, ``torch.cuda.max_memory_allocated`` on CUDA): activations kept for
backward, gradients and temporaries, deterministic and the same yardstick for
every model. On CPU the increase of the process's peak resident set size
(``VmHWM``) is reported too; it adds the allocator's slack and varies from run
to run.

Examples::

    python tools/analysis_tools/benchmark.py                # full table
    python tools/analysis_tools/benchmark.py --batch 2 --size 64 --reps 2 \\
        --models ours-26w4s timm-resnet50 --modes eval deploy
    python tools/analysis_tools/benchmark.py --device cuda  # AMP bf16 + MFU
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Dict, List, Optional

import torch
from torch import nn

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__),
                                                '..', '..')))
from res2net_mm.deploy import fuse_res2net  # noqa: E402
from res2net_mm.models import Bottle2neck, build_classifier  # noqa: E402
from res2net_mm.models.classifier import PooledClassifier  # noqa: E402
from res2net_mm.utils import count_macs  # noqa: E402
from res2net_mm.utils.io import atomic_write  # noqa: E402

# name -> (architecture group, builder)
ARCH_26W4S = '26w4s'
ARCH_V1B = 'v1b'
ARCH_RESNET = 'resnet50'


def _ours(arch, fast_path=True, channels_last=None):
    def build():
        model = build_classifier(arch, channels_last=channels_last)
        for m in model.modules():
            if isinstance(m, Bottle2neck):
                m.fast_path = fast_path
        return model
    return build


def _mmpretrain():
    from mmpretrain.models.backbones import Res2Net
    return PooledClassifier(Res2Net(depth=50, scales=4, base_width=26), 2048)


def _mmdet():
    from mmdet.models.backbones import Res2Net
    return PooledClassifier(Res2Net(depth=50, scales=4, base_width=26,
                                    deep_stem=True, avg_down=True), 2048)


def _timm(name):
    def build():
        import timm
        return timm.create_model(name)
    return build


MODELS: Dict[str, tuple] = {
    'ours-26w4s': (ARCH_26W4S, _ours('res2net50_26w_4s')),
    'mmpretrain-26w4s': (ARCH_26W4S, _mmpretrain),
    'timm-26w4s': (ARCH_26W4S, _timm('res2net50_26w_4s')),
    # The same model with the grouped stage convs off: what they gain.
    'ours-26w4s-plain': (ARCH_26W4S, _ours('res2net50_26w_4s', False)),
    # Computing in the input's layout (no automatic channels_last on CPU):
    # in NCHW, the same kernels as the peers.
    'ours-26w4s-nchw': (ARCH_26W4S, _ours('res2net50_26w_4s',
                                          channels_last=False)),
    'ours-v1b': (ARCH_V1B, _ours('res2net50_v1b_26w_4s')),
    'mmdet-v1d': (ARCH_V1B, _mmdet),
    'timm-res2net50d': (ARCH_V1B, _timm('res2net50d')),
    'timm-resnet50': (ARCH_RESNET, _timm('resnet50')),
}
MODES = ('train', 'eval', 'deploy')
FORMATS = {'nchw': torch.contiguous_format, 'cl': torch.channels_last}
PEAK_TFLOPS = {'H100': 989., 'H200': 989., 'A100': 312., 'L40S': 362.,
               '4090': 165., 'A10': 125.}


def deploy(name: str, model: nn.Module) -> nn.Module:
    """The best available BN folding of each model (eval mode first)."""
    model.eval()
    if name.startswith('ours'):
        return fuse_res2net(model)
    from mmcv.cnn import fuse_conv_bn
    return fuse_conv_bn(model)


class Case:
    """One (model, mode, memory format) to time."""

    def __init__(self, name: str, mode: str, fmt: str, args):
        self.name, self.mode, self.fmt = name, mode, fmt
        self.arch = MODELS[name][0]
        torch.manual_seed(0)
        model = MODELS[name][1]()
        mf = FORMATS[fmt]
        dev = torch.device(args.device)
        if mode == 'deploy':
            model = deploy(name, model)
        model = model.to(dev, memory_format=mf)
        model.train(mode == 'train')
        self.model = model
        self.x = torch.randn(args.batch, 3, args.size, args.size,
                             device=dev).contiguous(memory_format=mf)
        self.y = torch.randint(0, 1000, (args.batch, ), device=dev)
        self.amp = args.device == 'cuda'
        self.opt = torch.optim.SGD(model.parameters(), lr=1e-4,
                                   momentum=0.9) if mode == 'train' else None
        self.times: List[float] = []
        self.batch = args.batch
        self.iters = args.iters
        self.sync = torch.cuda.synchronize if args.device == 'cuda' \
            else (lambda: None)

    def step(self):
        with torch.autocast('cuda', dtype=torch.bfloat16,
                            enabled=self.amp):
            if self.opt is None:
                with torch.inference_mode():
                    return self.model(self.x)
            loss = nn.functional.cross_entropy(self.model(self.x), self.y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss

    def time_once(self):
        self.sync()
        t0 = time.perf_counter()
        for _ in range(self.iters):
            self.step()
        self.sync()
        self.times.append((time.perf_counter() - t0) / self.iters)

    @property
    def imgs(self) -> float:
        return self.batch / statistics.median(self.times)

    @property
    def spread(self) -> float:
        """(max - min) / median of the repetition times, in %."""
        med = statistics.median(self.times)
        return 100 * (max(self.times) - min(self.times)) / med


def forward_flops(name: str, args) -> float:
    """FLOPs (2 x MACs) of one forward of one image, counted by
    :func:`res2net_mm.utils.count_macs` (the variant table's counter)."""
    model = MODELS[name][1]().eval()
    return 2. * count_macs(model, (1, 3, args.size, args.size))


def gpu_peak_tflops(gpu_name: str,
                    override: Optional[float] = None) -> Optional[float]:
    """Dense bf16 peak of a GPU in TFLOP/s, by its name, for MFU (None when
    the name is not in :data:`PEAK_TFLOPS` and no ``--peak-tflops`` is
    given)."""
    if override is not None:
        return override
    return next((v for k, v in PEAK_TFLOPS.items() if k in gpu_name), None)


def mfu_percent(imgs_per_s: float, forward_flops_per_img: float, mode: str,
                peak_tflops: float) -> float:
    """Model FLOP utilisation in %: the FLOPs the model needs (a training
    step counts 3 forwards: backward costs about two) per second, over the
    GPU's peak."""
    factor = 3 if mode == 'train' else 1
    return 100 * imgs_per_s * forward_flops_per_img * factor / (
        peak_tflops * 1e12)


def peak_memory(name: str, fmt: str, args) -> Optional[Dict[str, float]]:
    """Peak training memory in MiB (``tensors``, ``rss``), measured in a
    fresh subprocess."""
    cmd = [sys.executable, os.path.abspath(__file__), '--_memory-child',
           name, '--memory-format', fmt, '--batch', str(args.batch),
           '--size', str(args.size), '--threads', str(args.threads),
           '--device', args.device]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        print(f'memory run of {name} failed:\n{res.stderr[-2000:]}',
              file=sys.stderr)
        return None
    return json.loads(res.stdout.strip().splitlines()[-1])


def peak_tensor_bytes(prof) -> int:
    """Peak of the live CPU tensor bytes over a profiled region, from the
    allocator's allocation (+) and free (-) events."""
    cpu = torch._C._autograd.DeviceType.CPU
    events = sorted((e.start_ns(), e.nbytes())
                    for e in prof.profiler.kineto_results.events()
                    if e.name() == '[memory]' and e.device_type() == cpu)
    if not events:
        raise RuntimeError('the profiler recorded no memory events; this '
                           'torch build cannot measure CPU tensor memory')
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak


def _status_mib(field: str) -> float:
    """``VmRSS`` / ``VmHWM`` (peak RSS) of this process, in MiB.

    ``VmHWM`` belongs to this process image; ``ru_maxrss`` would not do: a
    child started by a big parent inherits the parent's peak across exec.
    """
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f'{field} not in /proc/self/status')


def memory_child(args) -> None:
    torch.set_num_threads(args.threads)
    case = Case(args._memory_child, 'train', args.memory_format, args)
    if args.device == 'cuda':
        case.step()  # the optimizer state exists from now on
        case.opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        case.step()
        torch.cuda.synchronize()
        tensors = (torch.cuda.max_memory_allocated() - base) / 2**20
        print(json.dumps(dict(tensors=tensors, rss=None)))
        return
    base = _status_mib('VmRSS')
    for _ in range(2):  # the second step has optimizer state
        case.step()
    rss = _status_mib('VmHWM') - base
    # Freed here, so that every byte the profiled step frees was allocated
    # inside it (the profiler cannot size frees of older blocks).
    case.opt.zero_grad(set_to_none=True)
    with torch.profiler.profile(
            activities=[torch.profiler.ProfilerActivity.CPU],
            profile_memory=True) as prof:
        case.step()
    tensors = peak_tensor_bytes(prof) / 2**20
    print(json.dumps(dict(tensors=tensors, rss=rss)))


def ratio_table(cases: List[Case], mem: Dict) -> List[dict]:
    """Ratios of every res2net_mm case to the best same-architecture peer
    (same mode and format) and to timm's ResNet-50."""
    by_key = {(c.name, c.mode, c.fmt): c for c in cases}
    rows = []
    for c in cases:
        if not c.name.startswith('ours'):
            continue
        peers = [p for p in cases if p.arch == c.arch and p.mode == c.mode
                 and p.fmt == c.fmt and not p.name.startswith('ours')]
        best = max(peers, key=lambda p: p.imgs) if peers else None
        resnet = by_key.get(('timm-resnet50', c.mode, c.fmt))
        row = dict(model=c.name, mode=c.mode, fmt=c.fmt, imgs=c.imgs,
                   best_peer=best.name if best else None,
                   vs_best_peer=c.imgs / best.imgs if best else None,
                   vs_resnet50=c.imgs / resnet.imgs if resnet else None)
        if c.mode == 'train' and mem:
            ours = mem.get((c.name, c.fmt))
            peer_mem = [mem.get((p.name, c.fmt)) for p in peers]
            peer_mem = [m['tensors'] for m in peer_mem if m is not None]
            row['peak_mem_mib'] = ours['tensors'] if ours else None
            row['best_peer_mem_mib'] = min(peer_mem) if peer_mem else None
        rows.append(row)
    return rows


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--models', nargs='+', default=list(MODELS),
                   choices=list(MODELS), metavar='NAME',
                   help=f'models to run (default all): {", ".join(MODELS)}')
    p.add_argument('--modes', nargs='+', default=list(MODES), choices=MODES)
    p.add_argument('--memory-format', nargs='+', default=['nchw', 'cl'],
                   choices=list(FORMATS), dest='memory_format')
    p.add_argument('--batch', type=int, default=8)
    p.add_argument('--size', type=int, default=224)
    p.add_argument('--reps', type=int, default=5,
                   help='interleaved repetitions (median reported)')
    p.add_argument('--iters', type=int, default=1,
                   help='iterations per timed repetition')
    p.add_argument('--warmup', type=int, default=1)
    p.add_argument('--threads', type=int, default=torch.get_num_threads())
    p.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    p.add_argument('--memory', action='store_true',
                   help='also measure peak training memory (subprocesses)')
    p.add_argument('--peak-tflops', type=float, default=None,
                   help='GPU peak bf16 TFLOP/s for MFU (default: by name)')
    p.add_argument('--json', default=None, help='write results here')
    p.add_argument('--_memory-child', default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for key in ('batch', 'size', 'reps', 'iters', 'threads'):
        if getattr(args, key) < 1:
            p.error(f'--{key} must be >= 1, got {getattr(args, key)}')
    if args.device == 'cuda' and not torch.cuda.is_available():
        p.error('--device cuda but torch sees no CUDA device; use --device cpu')
    if args._memory_child is None and isinstance(args.memory_format, str):
        args.memory_format = [args.memory_format]
    return args


def _write_json(path: str, data) -> None:
    def write(tmp):
        with open(tmp, 'w') as f:
            json.dump(data, f, indent=1)

    atomic_write(path, write)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args._memory_child is not None:
        args.memory_format = args.memory_format[0]
        memory_child(args)
        return {}
    torch.set_num_threads(args.threads)
    cases = [Case(n, m, f, args) for f in args.memory_format
             for m in args.modes for n in args.models]
    print(f'torch {torch.__version__}, {args.device}, threads '
          f'{torch.get_num_threads()}, batch {args.batch}, {args.size}x'
          f'{args.size}, reps {args.reps} x iters {args.iters}'
          + (', AMP bf16' if args.device == 'cuda' else ', fp32'),
          flush=True)
    for _ in range(args.warmup):
        for c in cases:
            c.step()
    for rep in range(args.reps):  # interleaved: every case once per rep
        for c in cases:
            c.time_once()
        print(f'repetition {rep + 1}/{args.reps} done', file=sys.stderr,
              flush=True)

    mem = {}
    if args.memory and 'train' in args.modes:
        for f in args.memory_format:
            for n in args.models:
                mem[(n, f)] = peak_memory(n, f, args)

    mfu = {}
    if args.device == 'cuda':
        gpu = torch.cuda.get_device_name()
        peak = gpu_peak_tflops(gpu, args.peak_tflops)
        if peak is None:
            print(f'no peak TFLOP/s known for {gpu!r}: pass --peak-tflops '
                  f'for MFU', file=sys.stderr)
        else:
            for n in args.models:
                mfu[n] = (forward_flops(n, args), peak)

    print(f'\n{"model":18} {"mode":7} {"fmt":5} {"img/s":>8} '
          f'{"spread%":>8}' + (f' {"MFU%":>6}' if mfu else '')
          + (f' {"tensorMiB":>9} {"rssMiB":>7}' if mem else ''))
    for c in cases:
        line = (f'{c.name:18} {c.mode:7} {c.fmt:5} {c.imgs:8.2f} '
                f'{c.spread:8.1f}')
        if mfu and c.name in mfu:
            flops, peak = mfu[c.name]
            line += f' {mfu_percent(c.imgs, flops, c.mode, peak):6.1f}'
        if mem and c.mode == 'train' and mem.get((c.name, c.fmt)):
            m = mem[(c.name, c.fmt)]
            rss = f'{m["rss"]:7.0f}' if m['rss'] is not None else f'{"-":>7}'
            line += f' {m["tensors"]:9.0f} {rss}'
        print(line)

    rows = ratio_table(cases, mem)
    if rows:
        print(f'\n{"ours":12} {"mode":7} {"fmt":5} {"best peer":16} '
              f'{"x peer":>7} {"x R50":>7}')
        for r in rows:
            vp = f'{r["vs_best_peer"]:7.3f}' if r['vs_best_peer'] else \
                f'{"-":>7}'
            vr = f'{r["vs_resnet50"]:7.3f}' if r['vs_resnet50'] else \
                f'{"-":>7}'
            line = (f'{r["model"]:12} {r["mode"]:7} {r["fmt"]:5} '
                    f'{str(r["best_peer"]):16} {vp} {vr}')
            if r.get('peak_mem_mib') is not None:
                line += (f'  peak tensors {r["peak_mem_mib"]:.0f} MiB vs '
                         f'best peer {r["best_peer_mem_mib"] or float("nan"):.0f}')
            print(line)
    result = dict(
        settings=dict(batch=args.batch, size=args.size, reps=args.reps,
                      iters=args.iters, threads=args.threads,
                      device=args.device, torch=torch.__version__),
        cases=[dict(model=c.name, mode=c.mode, fmt=c.fmt, imgs=c.imgs,
                    times=c.times) for c in cases],
        ratios=rows,
        memory_mib={f'{n}/{f}': v for (n, f), v in mem.items()})
    if args.json:
        _write_json(args.json, result)
    return result


if __name__ == '__main__':
    main()
