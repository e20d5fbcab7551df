"""The README's claims: its Python example runs, and its config table lists every key."""

import re
from pathlib import Path

from minilearn.config import describe_schema

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_python_example_runs():
    namespace = {}

    exec(compile(python_blocks()[0], "README example", "exec"), namespace)

    history = namespace["history"]
    assert history.status == "completed"
    assert history["val_accuracy"][-1] > 0.9
    assert len(namespace["model"].predict(namespace["X_test"])) == len(namespace["X_test"])


def test_config_table_lists_every_key():
    text = README.read_text(encoding="utf-8")

    for dotted, _kind, _default, _help in describe_schema():
        assert f"| `{dotted}` |" in text, dotted
