"""posetr.files: JSON outputs are written whole (a temporary file moved into place), a failed write leaves
the previous file, and a killed write's temporary file is removed by the next one."""
import json

import pytest

from posetr.files import write_atomically, write_json


def test_write_json_replaces_whole_and_cleans_up(tmp_path):
    path = tmp_path / "out" / "metrics.json"
    write_json(str(path), {"AP": 0.5}, indent=2)
    (path.parent / ".metrics.json-killed.tmp").write_text("partial")
    write_json(str(path), {"AP": 0.9})
    assert json.loads(path.read_text()) == {"AP": 0.9}
    assert sorted(p.name for p in path.parent.iterdir()) == ["metrics.json"]


def test_a_failed_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / "results.json"
    write_json(str(path), [1, 2])

    def fail(f):
        f.write(b"[1,")
        raise RuntimeError("stopped")

    with pytest.raises(RuntimeError, match="stopped"):
        write_atomically(str(path), fail)
    assert json.loads(path.read_text()) == [1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]
