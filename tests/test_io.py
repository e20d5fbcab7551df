import csv
import datetime
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from minilearn import io

REPOSITORY = Path(__file__).resolve().parent.parent


def _temporary_files(directory):
    return sorted(path.name for path in Path(directory).iterdir() if path.name.endswith(".tmp"))


def test_atomic_write_bytes_creates_and_replaces(tmp_path):
    target = tmp_path / "data.bin"

    io.atomic_write_bytes(target, b"first")
    io.atomic_write_bytes(target, b"second")

    assert target.read_bytes() == b"second"
    assert _temporary_files(tmp_path) == []


def test_atomic_write_text_keeps_line_endings(tmp_path):
    target = tmp_path / "note.txt"

    io.atomic_write_text(target, "a\nb\r\nc é\n")

    assert target.read_bytes() == "a\nb\r\nc é\n".encode("utf-8")


def test_atomic_write_failure_keeps_old_file(tmp_path, monkeypatch):
    target = tmp_path / "data.bin"
    io.atomic_write_bytes(target, b"complete")

    def failing_fsync(descriptor):
        raise OSError("disk full")

    monkeypatch.setattr(io.os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="disk full"):
        io.atomic_write_bytes(target, b"new data that never lands")

    assert target.read_bytes() == b"complete"
    assert _temporary_files(tmp_path) == []


def test_atomic_write_interrupt_removes_temporary(tmp_path, monkeypatch):
    target = tmp_path / "data.bin"

    def interrupted_replace(source, destination):
        raise KeyboardInterrupt

    monkeypatch.setattr(io.os, "replace", interrupted_replace)
    with pytest.raises(KeyboardInterrupt):
        io.atomic_write_bytes(target, b"data")

    assert not target.exists()
    assert _temporary_files(tmp_path) == []


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_atomic_write_file_mode(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    new = tmp_path / "new.txt"
    existing = tmp_path / "existing.txt"
    existing.write_text("old")
    existing.chmod(0o640)

    io.atomic_write_text(new, "x")
    io.atomic_write_text(existing, "y")

    assert new.stat().st_mode & 0o777 == 0o666 & ~umask
    assert existing.stat().st_mode & 0o777 == 0o640


def test_to_jsonable_converts_numpy_and_nonfinite():
    value = {
        "int": np.int64(3),
        "float": np.float32(0.5),
        "bool": np.bool_(True),
        "nan": float("nan"),
        "inf": np.float64("inf"),
        "array": np.array([[1.0, np.nan], [-np.inf, 2.0]]),
        "tuple": (1, np.int8(2)),
        "path": Path("runs") / "a",
        5: "integer key",
        np.int32(6): None,
    }

    converted = io.to_jsonable(value)

    assert converted == {
        "int": 3,
        "float": 0.5,
        "bool": True,
        "nan": None,
        "inf": None,
        "array": [[1.0, None], [None, 2.0]],
        "tuple": [1, 2],
        "path": str(Path("runs") / "a"),
        "5": "integer key",
        "6": None,
    }
    assert type(converted["int"]) is int
    assert type(converted["float"]) is float
    assert type(converted["bool"]) is bool


def test_to_jsonable_rejects_unknown_types():
    with pytest.raises(TypeError, match=r"value\['a'\]\[1\] has type complex"):
        io.to_jsonable({"a": [1, 2j]})
    with pytest.raises(TypeError, match="has type set"):
        io.to_jsonable({1, 2})
    with pytest.raises(TypeError, match=r"key \(1, 2\) of type tuple.*convert the key to str"):
        io.to_jsonable({(1, 2): 3})


def _reject_constant(name):
    raise ValueError(f"non-standard JSON constant {name}")


def _numbers(value):
    if isinstance(value, dict):
        for item in value.values():
            yield from _numbers(item)
    elif isinstance(value, list):
        for item in value:
            yield from _numbers(item)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield value


def test_write_json_is_strict(tmp_path):
    target = tmp_path / "metrics.json"
    payload = {
        "loss": [np.float32(0.25), float("nan"), float("inf"), -float("inf")],
        "epoch": np.int64(4),
        "weights": np.linspace(0, 1, 3, dtype=np.float32),
        "name": "run é",
    }

    io.write_json(target, payload)
    text = target.read_text(encoding="utf-8")
    loaded = json.loads(text, parse_constant=_reject_constant)

    assert text.endswith("}\n")
    assert '\n  "loss": [' in text
    assert list(loaded) == ["loss", "epoch", "weights", "name"]
    assert loaded["loss"] == [0.25, None, None, None]
    assert loaded["epoch"] == 4
    assert loaded["name"] == "run é"
    assert all(type(number) in (int, float) for number in _numbers(loaded))
    assert "NaN" not in text
    assert "Infinity" not in text


def test_write_csv_round_trips_floats(tmp_path):
    target = tmp_path / "metrics.csv"
    values = [0.1, 1 / 3, 1e-300, 123456789.123456789, float(np.float32(0.1)), 2.5e16]
    records = [{"epoch": index, "loss": value} for index, value in enumerate(values)]

    io.write_csv(target, records, ["epoch", "loss"])
    with open(target, newline="") as file:
        rows = list(csv.DictReader(file))

    assert [int(row["epoch"]) for row in rows] == list(range(len(values)))
    for row, value in zip(rows, values):
        assert float(row["loss"]) == value


def test_write_csv_empty_fields_and_column_order(tmp_path):
    target = tmp_path / "metrics.csv"
    records = [
        {"loss": np.float32(0.5), "epoch": np.int64(1), "note": "a, \"quoted\" note"},
        {"epoch": 2, "loss": float("nan"), "val": None, "extra": 7},
        {"epoch": 3, "loss": float("inf"), "val": -np.inf},
    ]

    io.write_csv(target, records, ["epoch", "loss", "val", "note"])
    text = target.read_text()
    with open(target, newline="") as file:
        rows = list(csv.DictReader(file))

    assert text.splitlines()[0] == "epoch,loss,val,note"
    assert text.splitlines()[2] == "2,,,"
    assert rows[0] == {"epoch": "1", "loss": "0.5", "val": "", "note": 'a, "quoted" note'}
    assert rows[1] == {"epoch": "2", "loss": "", "val": "", "note": ""}
    assert rows[2] == {"epoch": "3", "loss": "", "val": "", "note": ""}
    assert "extra" not in text


def test_write_csv_no_records_writes_header(tmp_path):
    target = tmp_path / "metrics.csv"

    io.write_csv(target, [], ("epoch", "loss"))

    assert target.read_text() == "epoch,loss\n"


def test_write_csv_rejects_bad_columns(tmp_path):
    target = tmp_path / "metrics.csv"

    with pytest.raises(TypeError, match="columns='epoch' is a string"):
        io.write_csv(target, [], "epoch")
    with pytest.raises(ValueError, match="non-empty list of strings"):
        io.write_csv(target, [], [])
    with pytest.raises(ValueError, match="duplicates: loss"):
        io.write_csv(target, [], ["loss", "epoch", "loss"])
    with pytest.raises(TypeError, match=r"records\[0\] is a list, not a dict"):
        io.write_csv(target, [[1, 2]], ["epoch", "loss"])
    assert not target.exists()


def test_npz_round_trip(tmp_path):
    target = tmp_path / "model"
    arrays = {
        "layer0.weight": np.arange(6, dtype=np.float32).reshape(2, 3),
        "layer0.bias": np.zeros(3),
        "labels": np.array([0, 1, 2], dtype=np.int64),
    }

    io.save_arrays_npz(target, arrays)
    loaded = io.load_arrays_npz(target)

    assert target.exists()
    assert list(loaded) == list(arrays)
    for name, array in arrays.items():
        assert loaded[name].dtype == array.dtype
        np.testing.assert_array_equal(loaded[name], array)


def test_save_npz_rejects_object_arrays(tmp_path):
    with pytest.raises(TypeError, match="array 'x' has dtype object"):
        io.save_arrays_npz(tmp_path / "a.npz", {"x": np.array([{}, None], dtype=object)})
    assert not (tmp_path / "a.npz").exists()


def test_load_npz_errors_name_the_file(tmp_path):
    missing = tmp_path / "missing.npz"
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"this is not an archive")
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    truncated = tmp_path / "truncated.npz"
    io.save_arrays_npz(truncated, {"x": np.arange(1000.0)})
    truncated.write_bytes(truncated.read_bytes()[:500])
    plain = tmp_path / "plain.npy"
    np.save(plain, np.arange(3))

    with pytest.raises(ValueError, match="missing.npz' not found"):
        io.load_arrays_npz(missing)
    with pytest.raises(ValueError, match="not found or not a file"):
        io.load_arrays_npz(tmp_path)
    for path in (garbage, empty, truncated):
        with pytest.raises(ValueError, match=f"{path.name}' is not a readable npz archive"):
            io.load_arrays_npz(path)
    with pytest.raises(ValueError, match="plain.npy' is a .npy file, not an npz archive"):
        io.load_arrays_npz(plain)


def test_load_npz_never_unpickles(tmp_path):
    target = tmp_path / "pickled.npz"
    np.savez(target, x=np.array([{"a": 1}], dtype=object))

    with pytest.raises(ValueError, match="pickled.npz' is not a readable npz archive"):
        io.load_arrays_npz(target)


class _FrozenDatetime(datetime.datetime):
    @classmethod
    def now(cls, tz=None):
        return cls(2026, 1, 2, 3, 4, 5)


def test_run_directory_suffixes_in_same_second(tmp_path, monkeypatch):
    monkeypatch.setattr(io.datetime, "datetime", _FrozenDatetime)

    paths = [io.create_run_directory(tmp_path / "runs", "mlp") for _ in range(4)]

    assert [path.name for path in paths] == [
        "mlp-20260102-030405", "mlp-20260102-030405-2", "mlp-20260102-030405-3",
        "mlp-20260102-030405-4",
    ]
    assert all(path.is_dir() and not any(path.iterdir()) for path in paths)


def test_run_directory_real_clock(tmp_path):
    paths = [io.create_run_directory(tmp_path, "run") for _ in range(5)]

    assert len(set(paths)) == 5
    assert all(path.parent == tmp_path and path.name.startswith("run-") for path in paths)


def test_run_directory_threads_race(tmp_path, monkeypatch):
    monkeypatch.setattr(io.datetime, "datetime", _FrozenDatetime)
    barrier = threading.Barrier(16)
    paths = []

    def create():
        barrier.wait()
        paths.append(io.create_run_directory(tmp_path, "run"))

    threads = [threading.Thread(target=create) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(paths) == 16
    assert len(set(paths)) == 16
    assert len(list(tmp_path.iterdir())) == 16


_RACING_PROCESS = textwrap.dedent("""
    import datetime, sys
    from minilearn import io

    class Frozen(datetime.datetime):
        @classmethod
        def now(cls, tz=None):
            return cls(2026, 1, 2, 3, 4, 5)

    io.datetime.datetime = Frozen
    for _ in range(3):
        print(io.create_run_directory(sys.argv[1], "run"), flush=True)
""")


def test_run_directory_processes_race(tmp_path):
    processes = [
        subprocess.Popen([sys.executable, "-c", _RACING_PROCESS, str(tmp_path)],
                         cwd=REPOSITORY, stdout=subprocess.PIPE, text=True)
        for _ in range(6)
    ]
    outputs = [process.communicate(timeout=60)[0] for process in processes]

    assert all(process.returncode == 0 for process in processes)
    paths = [line for output in outputs for line in output.splitlines()]
    assert len(paths) == 18
    assert len(set(paths)) == 18
    assert {Path(path).name for path in paths} == {"run-20260102-030405"} | {
        f"run-20260102-030405-{n}" for n in range(2, 19)
    }


def test_run_directory_creates_parent(tmp_path):
    path = io.create_run_directory(tmp_path / "a" / "b", "run")

    assert path.parent == tmp_path / "a" / "b"
    assert path.is_dir()


@pytest.mark.parametrize("prefix", ["", "a/b", "..", None])
def test_run_directory_rejects_bad_prefix(tmp_path, prefix):
    with pytest.raises(ValueError, match="name_prefix="):
        io.create_run_directory(tmp_path, prefix)


_WRITER_PROCESS = textwrap.dedent("""
    import sys
    from minilearn import io

    target, size = sys.argv[1], int(sys.argv[2])
    generation = 0
    while True:
        generation += 1
        io.atomic_write_bytes(target, bytes([generation % 256]) * size)
""")


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
@pytest.mark.parametrize("delay", [0.0, 0.05, 0.15, 0.3, 0.5, 0.8])
def test_killed_writer_leaves_complete_file(tmp_path, delay):
    target = tmp_path / "payload.bin"
    size = 8 * 1024 * 1024
    writer = subprocess.Popen([sys.executable, "-c", _WRITER_PROCESS, str(target), str(size)],
                              cwd=REPOSITORY)

    # Kill after the first complete write plus the delay, or earlier when the delay is 0.
    deadline = time.monotonic() + 30
    while delay and not target.exists() and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(delay)
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=30)

    assert writer.returncode == -signal.SIGKILL
    if delay:
        assert target.exists()
    if target.exists():
        content = target.read_bytes()
        assert len(content) == size
        assert content.count(content[:1]) == size
    assert all(name.startswith(".payload.bin.") for name in _temporary_files(tmp_path))
    assert {path.name for path in tmp_path.iterdir()} <= {"payload.bin"} | set(
        _temporary_files(tmp_path))


def test_nonfinite_floats_in_json_only_as_null(tmp_path):
    target = tmp_path / "values.json"
    values = [math.nan, math.inf, -math.inf, np.float16("nan"), 1.5]

    io.write_json(target, values)

    assert json.loads(target.read_text(), parse_constant=_reject_constant) == [
        None, None, None, None, 1.5]
