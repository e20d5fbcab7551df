"""Files of a run directory: atomic writes, strict JSON, CSV, npz archives and run directories.

Every writer here replaces its file atomically. The data goes to a temporary file
in the same directory, which is flushed, fsynced and then renamed over the target
with ``os.replace``. So a reader finds either the previous complete file or the
new complete one, even when the writing process crashes at any moment.

A process killed in the middle of a write can leave its temporary file behind,
named ``.<file name>.<random>.tmp`` beside the target. Such files are incomplete by
construction and safe to delete.
"""

import csv
import datetime
import functools
import io
import json
import logging
import math
import os
import tempfile
import zipfile
from numbers import Integral, Real
from pathlib import Path, PurePath

import numpy as np

logger = logging.getLogger(__name__)


def atomic_write_bytes(path, data):
    """Write ``data`` (bytes) to ``path`` atomically, replacing any existing file.

    The new file gets the permissions of the file it replaces, or 0o666 minus the
    umask when there was none, like a file opened with ``open(path, "wb")``.
    On any exception the temporary file is removed and the exception re-raised.
    """
    path = Path(path)
    mode = _mode_for(path)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                             suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
            if hasattr(os, "fchmod"):
                os.fchmod(file.fileno(), mode)
        os.replace(temporary, path)
    except BaseException:
        _remove_quietly(temporary)
        raise

    _fsync_directory(path.parent)


def atomic_write_text(path, text, encoding="utf-8"):
    """Write the string ``text`` to ``path`` atomically, encoded with ``encoding``.

    Line endings are written as they are in ``text``, with no translation to the
    platform's convention.
    """
    atomic_write_bytes(path, text.encode(encoding))


def _mode_for(path):
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        return 0o666 & ~_umask()


@functools.cache
def _umask():
    """Return the process umask, read once.

    Linux (4.7 and later) reports it in /proc/self/status. Elsewhere the only way to read it is to
    set it and set it back, which briefly changes it for every thread.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    current = os.umask(0o022)
    os.umask(current)
    return current


def _remove_quietly(path):
    try:
        os.unlink(path)
    except OSError as error:
        logger.warning("could not remove temporary file %s: %s", path, error)


def _fsync_directory(directory):
    """Flush the directory entry of a rename to disk, where the platform allows it.

    Without this, a power failure right after ``os.replace`` can lose the rename on
    some file systems. Windows cannot open a directory, so it is skipped there.
    """
    if os.name != "posix":
        return
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError as error:
        logger.debug("could not open directory %s to fsync it: %s", directory, error)
        return
    try:
        os.fsync(descriptor)
    except OSError as error:
        logger.debug("fsync of directory %s failed: %s", directory, error)
    finally:
        os.close(descriptor)


def to_jsonable(obj):
    """Return ``obj`` converted to plain Python values that strict JSON can encode.

    numpy scalars become int, float or bool, numpy arrays and tuples become lists,
    paths become strings, and every non-finite float (NaN, inf, -inf) becomes None.
    Dict keys must be strings or integers, which become strings as JSON requires.
    Raises TypeError naming the location of any other type.
    """
    return _convert(obj, "value")


def _convert(obj, location):
    if obj is None or isinstance(obj, (str, bool)):
        return obj
    if isinstance(obj, np.ndarray):
        return _convert(obj.tolist(), location)
    if isinstance(obj, np.generic):
        return _convert(obj.item(), location)
    if isinstance(obj, Integral):
        return int(obj)
    if isinstance(obj, Real):
        value = float(obj)
        return value if math.isfinite(value) else None
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, dict):
        return {_convert_key(key, location): _convert(value, f"{location}[{key!r}]")
                for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_convert(item, f"{location}[{index}]") for index, item in enumerate(obj)]
    raise TypeError(
        f"{location} has type {type(obj).__name__}, which JSON cannot encode; convert it "
        f"to a number, string, list or dict first"
    )


def _convert_key(key, location):
    if isinstance(key, str):
        return key
    if isinstance(key, (Integral, np.integer)) and not isinstance(key, (bool, np.bool_)):
        return str(int(key))
    raise TypeError(
        f"{location} has the key {key!r} of type {type(key).__name__}; JSON object keys "
        f"must be strings, so convert the key to str"
    )


def write_json(path, obj):
    """Write ``obj`` to ``path`` atomically as strict JSON (RFC 8259), indented by 2.

    Non-finite floats are written as null, so every JSON parser can read the file.
    The file ends with a newline.
    """
    text = json.dumps(to_jsonable(obj), indent=2, allow_nan=False, sort_keys=False,
                      ensure_ascii=False)
    atomic_write_text(path, text + "\n")


def write_csv(path, records, columns):
    """Write ``records`` (dicts) to ``path`` atomically as CSV, one row per record.

    The header row is ``columns``, and each row has the record's values in that
    order. Keys of a record that are not in ``columns`` are not written. Floats are
    written with ``repr``, the shortest text that reads back as the same float. A
    missing value, None or a non-finite float is written as an empty field, which
    pandas reads as NaN. Lines end with "\\n".
    """
    columns = _check_columns(columns)

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise TypeError(
                f"records[{index}] is a {type(record).__name__}, not a dict; pass one "
                f"dict of column name -> value per row"
            )
        writer.writerow([_csv_field(record.get(column)) for column in columns])

    atomic_write_text(path, buffer.getvalue())


def _check_columns(columns):
    if isinstance(columns, str):
        raise TypeError(f"columns={columns!r} is a string; pass a list of column names")
    columns = list(columns)
    if not columns or not all(isinstance(column, str) for column in columns):
        raise ValueError(f"columns={columns!r} must be a non-empty list of strings")
    duplicates = sorted({column for column in columns if columns.count(column) > 1})
    if duplicates:
        raise ValueError(f"columns contain duplicates: {', '.join(duplicates)}; name each once")
    return columns


def _csv_field(value):
    if value is None or isinstance(value, str):
        return "" if value is None else value
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, Integral):
        return str(value)
    if isinstance(value, Real):
        value = float(value)
        return repr(value) if math.isfinite(value) else ""
    return str(value)


def save_arrays_npz(path, arrays):
    """Write ``arrays`` (dict of name -> array) to ``path`` atomically as an npz archive.

    The archive is uncompressed and written at exactly ``path``, with no ".npz"
    appended. Object arrays are rejected because ``load_arrays_npz`` does not
    unpickle.
    """
    checked = {}
    for name, value in arrays.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"array name {name!r} is invalid; use a non-empty string")
        array = np.asarray(value)
        if array.dtype.hasobject:
            raise TypeError(
                f"array {name!r} has dtype object, which npz stores only by pickling; "
                f"convert it to a numeric dtype"
            )
        checked[name] = array

    buffer = io.BytesIO()
    np.savez(buffer, **checked)
    atomic_write_bytes(path, buffer.getvalue())


def load_arrays_npz(path):
    """Return the arrays of the npz archive at ``path`` as a dict of name -> array.

    Pickled data is never loaded. Raises ValueError naming the file when it is
    missing, is not an npz archive or is corrupt.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"npz file {str(path)!r} not found or not a file; check the path")

    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise _unreadable_npz(path, error) from error

    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise ValueError(
            f"{str(path)!r} is a .npy file, not an npz archive; save it with save_arrays_npz"
        )

    with loaded:
        try:
            return {name: loaded[name] for name in loaded.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
            raise _unreadable_npz(path, error) from error


def _unreadable_npz(path, error):
    return ValueError(
        f"{str(path)!r} is not a readable npz archive ({error}); the file is corrupt or "
        f"of another format, so write it again with save_arrays_npz"
    )


def create_run_directory(parent, name_prefix):
    """Create and return a new, empty directory ``parent/<name_prefix>-<YYYYmmdd-HHMMSS>``.

    The time is local time. The directory is created with ``os.mkdir``, which fails
    if the name exists, so two processes never share a directory. When the name is
    taken, "-2", "-3", ... is appended until ``os.mkdir`` succeeds. ``parent`` is
    created if needed.
    """
    _check_name_prefix(name_prefix)
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)

    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = f"{name_prefix}-{stamp}"
    attempt = 1
    while True:
        candidate = parent / (base if attempt == 1 else f"{base}-{attempt}")
        try:
            os.mkdir(candidate)
        except FileExistsError:
            attempt += 1
            continue
        logger.debug("created run directory %s", candidate)
        return candidate


def _check_name_prefix(name_prefix):
    if not isinstance(name_prefix, str) or not name_prefix:
        raise ValueError(f"name_prefix={name_prefix!r} is invalid; use a non-empty string")
    separators = {"/", os.sep, os.altsep} - {None}
    if any(separator in name_prefix for separator in separators) or name_prefix in (".", ".."):
        raise ValueError(
            f"name_prefix={name_prefix!r} is not a plain directory name; remove path "
            f"separators and use a name such as 'run'"
        )
