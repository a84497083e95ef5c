"""tools/train.py and tools/test.py, run as scripts on real (tiny) data.

The classification side uses the demo config on 64 digits; the detection side
uses a RetinaNet config of configs/detection on a tiny synthetic COCO set, so
the same tools are proven with both mmpretrain and mmdet configs.
"""
import glob
import json
import os.path as osp
import pickle

import pytest
from mmengine.config import Config
from toolhelp import (DEMO_CONFIG, REPO, load_checkpoint, run_tool,
                      tiny_digits_opts)

from tests.models.utils import load_tool


@pytest.fixture(scope='module')
def trained(digits, tmp_path_factory):
    """One training run shared by the tests below."""
    work_dir = str(tmp_path_factory.mktemp('train'))
    proc = run_tool([
        'train.py', DEMO_CONFIG, '--work-dir', work_dir, '--cfg-options',
        *tiny_digits_opts(digits, max_epochs=2)
    ])
    return work_dir, proc


def _test_metrics(work_dir):
    runs = sorted(glob.glob(osp.join(work_dir, '2*_*')))
    log = osp.join(runs[-1], osp.basename(runs[-1]) + '.json')
    with open(log) as f:
        return json.loads(f.read().strip().splitlines()[-1])


def test_train_writes_checkpoints_and_logs(trained):
    work_dir, proc = trained
    assert osp.isfile(osp.join(work_dir, 'epoch_2.pth'))
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        assert f.read().strip().endswith('epoch_2.pth')
    # the dumped config is the demo config with the overrides applied
    cfg = Config.fromfile(
        osp.join(work_dir, osp.basename(DEMO_CONFIG)))
    assert cfg.train_cfg.max_epochs == 2
    assert cfg.model.backbone.type == 'res2net_mm.Res2Net'
    ckpt = load_checkpoint(osp.join(work_dir, 'epoch_2.pth'))
    assert ckpt['meta']['epoch'] == 2
    # 64 images / batch 16 = 4 iterations per epoch
    assert ckpt['meta']['iter'] == 8
    assert any(k.startswith('backbone.layer4.1.convs.2')
               for k in ckpt['state_dict'])


def test_test_tool_evaluates_dumps_and_paints(trained, digits, tmp_path):
    work_dir, _ = trained
    out = str(tmp_path / 'preds.pkl')
    show = tmp_path / 'show'
    ckpt = osp.join(work_dir, 'epoch_2.pth')
    run_tool([
        'test.py', DEMO_CONFIG, ckpt, '--work-dir',
        str(tmp_path), '--out', out, '--show-dir',
        str(show), '--cfg-options', *tiny_digits_opts(digits, num_val=8)
    ])
    metrics = _test_metrics(str(tmp_path))
    assert 0 <= metrics['accuracy/top1'] <= 100
    with open(out, 'rb') as f:
        preds = pickle.load(f)
    assert len(preds) == 8
    assert preds[0]['pred_score'].shape == (10, )
    # the dumped predictions and the metric agree
    top1 = 100 * sum(int(p['pred_label']) == int(p['gt_label'])
                     for p in preds) / len(preds)
    assert top1 == pytest.approx(metrics['accuracy/top1'], abs=1e-3)
    assert len(glob.glob(str(show / '**' / '*.png'), recursive=True)) == 8


def test_test_tool_tta(trained, digits, tmp_path):
    work_dir, _ = trained
    ckpt = osp.join(work_dir, 'epoch_2.pth')
    out = str(tmp_path / 'preds.pkl')
    run_tool([
        'test.py', DEMO_CONFIG, ckpt, '--work-dir',
        str(tmp_path), '--tta', '--out', out, '--cfg-options',
        *tiny_digits_opts(digits, num_val=4)
    ])
    dumped = sorted(glob.glob(str(tmp_path / '2*_*' / 'vis_data' / 'config.py')))
    assert dumped
    cfg = Config.fromfile(dumped[-1])
    assert cfg.model.type == 'mmpretrain.AverageClsScoreTTA'
    assert cfg.test_dataloader.dataset.pipeline[-1]['type'] == 'TestTimeAug'
    assert 'accuracy/top1' in _test_metrics(str(tmp_path))
    with open(out, 'rb') as f:
        assert len(pickle.load(f)) == 4


def test_resume_from_given_checkpoint(trained, digits, tmp_path):
    """--resume PATH continues from that checkpoint (epoch 2 -> 3)."""
    work_dir, _ = trained
    ckpt = osp.join(work_dir, 'epoch_2.pth')
    proc = run_tool([
        'train.py', DEMO_CONFIG, '--work-dir',
        str(tmp_path), '--resume', ckpt, '--cfg-options',
        *tiny_digits_opts(digits, max_epochs=3)
    ])
    assert 'resumed epoch: 2, iter: 8' in proc.stdout + proc.stderr
    assert osp.isfile(tmp_path / 'epoch_3.pth')
    assert not osp.exists(tmp_path / 'epoch_1.pth')


def test_auto_scale_lr(trained, digits, tmp_path):
    """--auto-scale-lr scales lr by total batch / base_batch_size."""
    work_dir, _ = trained
    proc = run_tool([
        'train.py', DEMO_CONFIG, '--work-dir',
        str(tmp_path), '--auto-scale-lr', '--cfg-options',
        *tiny_digits_opts(digits, batch_size=64),
        'auto_scale_lr.base_batch_size=32'
    ])
    ckpt = load_checkpoint(tmp_path / 'epoch_1.pth')
    lr = ckpt['optimizer']['param_groups'][0]['lr']
    assert lr == pytest.approx(0.1 * 64 / 32)
    assert 'Scaling the original LR by 2.0' in proc.stdout + proc.stderr


def test_command_line_merging():
    """Flags map to the config keys mmengine reads."""
    train = load_tool('train.py')

    def merged(*argv):
        args = train.parse_args([DEMO_CONFIG, *argv])
        return train.merge_args(Config.fromfile(DEMO_CONFIG), args)

    cfg = merged('--resume')
    assert cfg.resume is True and cfg.load_from is None
    cfg = merged('--resume', 'x.pth')
    assert cfg.resume is True and cfg.load_from == 'x.pth'
    cfg = merged('--amp')
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.optim_wrapper.loss_scale == 'dynamic'
    cfg = merged()
    assert cfg.work_dir == osp.join('./work_dirs',
                                    'res2net26-tiny_1xb32_digits')
    assert cfg.auto_scale_lr.enable is False
    assert merged('--auto-scale-lr').auto_scale_lr.enable is True
    assert train.parse_args([DEMO_CONFIG, '--local-rank', '3']).local_rank == 3
    assert train.parse_args([DEMO_CONFIG, '--local_rank', '2']).local_rank == 2

    args = train.parse_args([DEMO_CONFIG, '--auto-scale-lr'])
    cfg = Config.fromfile(DEMO_CONFIG)
    cfg.pop('auto_scale_lr')
    with pytest.raises(RuntimeError, match='base_batch_size'):
        train.merge_args(cfg, args)


def test_unknown_scope_is_a_clear_error(tmp_path):
    bad = tmp_path / 'bad.py'
    bad.write_text("default_scope = 'mmnothere'\nmodel = dict()\n")
    proc = run_tool(['train.py', str(bad)], check=False)
    assert proc.returncode != 0
    assert "default_scope='mmnothere'" in proc.stderr
    assert 'known scopes: mmpretrain, mmdet' in proc.stderr


DET_CONFIG = osp.join(REPO, 'configs', 'detection',
                      'retinanet_res2net50-v1b_fpn_1x_coco.py')


def test_tools_with_mmdet_config(tmp_path):
    """The same tools train and test an mmdet config (default_scope mmdet)."""
    from mmdet.datasets import CocoDataset

    from res2net_mm.datasets.synthetic_coco import generate_synthetic_coco
    root = str(tmp_path / 'coco')
    generate_synthetic_coco(
        root, num_train=2, num_val=1, image_size=128,
        objects_per_image=(2, 3), object_size=(24, 56),
        class_names=CocoDataset.METAINFO['classes'])
    cfg = Config.fromfile(DET_CONFIG)
    assert cfg.default_scope == 'mmdet'
    cfg.model.backbone.pop('init_cfg', None)
    for split, key in (('train', 'train_dataloader'),
                       ('val', 'val_dataloader'), ('val', 'test_dataloader')):
        loader = cfg[key]
        loader.batch_size, loader.num_workers = 1, 0
        loader.persistent_workers = False
        loader.dataset.data_root = root
        loader.dataset.ann_file = f'annotations/instances_{split}.json'
        loader.dataset.data_prefix = dict(img=f'{split}/')
        for t in loader.dataset.pipeline:
            if t['type'] == 'Resize':
                t['scale'] = (128, 128)
    for key in ('val_evaluator', 'test_evaluator'):
        cfg[key].ann_file = osp.join(root, 'annotations/instances_val.json')
    cfg.model.test_cfg.score_thr = 0.0
    cfg.model.test_cfg.max_per_img = 10
    cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=1,
                         val_interval=1000)
    cfg.default_hooks.logger.interval = 1
    config = str(tmp_path / 'retinanet_tiny.py')
    cfg.dump(config)

    work_dir = str(tmp_path / 'work')
    run_tool(['train.py', config, '--work-dir', work_dir])
    ckpt = osp.join(work_dir, 'epoch_1.pth')
    assert osp.isfile(ckpt)
    state = load_checkpoint(ckpt)['state_dict']
    assert 'backbone.layer1.0.convs.0.weight' in state
    assert any(k.startswith('bbox_head.') for k in state)

    out = str(tmp_path / 'dets.pkl')
    run_tool(['test.py', config, ckpt, '--work-dir', work_dir, '--out', out])
    with open(out, 'rb') as f:
        dets = pickle.load(f)
    assert len(dets) == 1 and 'pred_instances' in dets[0]
    assert 'coco/bbox_mAP' in _test_metrics(work_dir)


def test_analyze_logs_plots_the_run(trained, tmp_path, capsys):
    work_dir, _ = trained
    tool = load_tool('analysis_tools/analyze_logs.py')
    series = tool.load_log(tool.find_json_logs(work_dir))
    # 2 epochs x 4 iterations logged every iteration; validation per epoch
    assert [x for x, _ in series['train']['loss']] == list(range(1, 9))
    assert [x for x, _ in series['val']['accuracy/top1']] == [1, 2]
    out = str(tmp_path / 'curves.png')
    tool.main(['plot_curve', work_dir, '--keys', 'loss', 'lr',
               'accuracy/top1', '--out', out])
    with open(out, 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    with pytest.raises(KeyError, match='available: .*accuracy/top1'):
        tool.plot_curve([work_dir], ['no_such_key'], out)
    tool.main(['cal_train_time', work_dir])
    assert 'average iter time' in capsys.readouterr().out
    with pytest.raises(FileNotFoundError, match='no mmengine json log'):
        tool.find_json_logs(str(tmp_path))


def test_print_config_applies_options(tmp_path, capsys):
    tool = load_tool('analysis_tools/print_config.py')
    out = str(tmp_path / 'full.py')
    tool.main([
        osp.join(REPO, 'configs', 'res2net', 'res2net50-w26-s4_8xb32_in1k.py'),
        '--cfg-options', 'train_dataloader.batch_size=64', '--out', out
    ])
    text = capsys.readouterr().out
    assert "arch='res2net50_26w_4s'" in text
    cfg = Config.fromfile(out)
    assert cfg.train_dataloader.batch_size == 64
    assert cfg.param_scheduler.milestones == [30, 60, 90]
