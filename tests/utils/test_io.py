"""``atomic_write``: the one writer of every file res2net_mm and its tools
produce."""
import json
import os

import pytest

from res2net_mm.utils.io import atomic_write


def test_writes_through_a_temporary_name_in_the_folder(tmp_path):
    dest = tmp_path / 'new' / 'result.json'
    seen = []

    def write(tmp):
        seen.append(tmp)
        assert os.path.dirname(tmp) == str(dest.parent)  # same file system
        assert tmp.endswith('.json') and tmp != str(dest)
        assert not dest.exists()  # only renamed when complete
        with open(tmp, 'w') as f:
            json.dump({'a': 1}, f)

    assert atomic_write(dest, write) == str(dest)
    assert json.loads(dest.read_text()) == {'a': 1}
    assert os.listdir(dest.parent) == ['result.json']
    assert not os.path.exists(seen[0])


@pytest.mark.parametrize('error', [OSError(28, 'No space left on device'),
                                   KeyboardInterrupt()])
def test_a_failure_keeps_the_old_file_and_leaves_nothing(tmp_path, error):
    dest = tmp_path / 'w.pth'
    dest.write_bytes(b'old')

    def write(tmp):
        with open(tmp, 'wb') as f:
            f.write(b'half')
        raise error

    with pytest.raises(type(error)):
        atomic_write(dest, write)
    assert dest.read_bytes() == b'old'
    assert os.listdir(tmp_path) == ['w.pth']
