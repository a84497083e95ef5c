"""Write a generated data set folder once, atomically, and reuse it."""
import json
import os
import os.path as osp
import shutil
import tempfile
from typing import Callable, Dict


def write_once(root: str, params: Dict, stamp: str, owner: str,
               render: Callable[[str], Dict]) -> Dict:
    """Render a data set into ``root`` unless it is already there.

    The folder is rendered into a temporary sibling and renamed into place, so
    an interrupted run never leaves a half-written set. A stamp file records
    ``params``: a second call with the same parameters returns the recorded
    summary at once; other parameters re-render. A non-empty folder without the
    stamp is refused rather than overwritten.

    Args:
        root (str): Destination folder.
        params (dict): Everything the content depends on (JSON-serialisable).
        stamp (str): Name of the stamp file inside ``root``.
        owner (str): Name of the generator, for the error message.
        render (callable): ``render(tmp_dir) -> summary`` writes the files.

    Returns:
        dict: The summary ``render`` returned (also on reuse).
    """
    root = osp.abspath(root)
    stamp_path = osp.join(root, stamp)
    if osp.isfile(stamp_path):
        with open(stamp_path) as f:
            old = json.load(f)
        if old.get('params') == params:
            return old['summary']
    elif osp.exists(root) and os.listdir(root):
        raise FileExistsError(
            f'{root} exists and was not written by {owner} (no {stamp}); '
            f'choose an empty or new folder')

    parent = osp.dirname(root)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f'.tmp-{owner}-', dir=parent)
    try:
        summary = render(tmp)
        with open(osp.join(tmp, stamp), 'w') as f:
            json.dump(dict(params=params, summary=summary), f)
        if osp.exists(root):
            shutil.rmtree(root)
        os.rename(tmp, root)
    finally:
        if osp.exists(tmp):
            shutil.rmtree(tmp)
    return summary
