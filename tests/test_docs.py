"""The docs: backprop.md's links and numbers hold, and extending.md's walkthrough runs step by step."""

import ast
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from minilearn.layers import Softmax
from minilearn.losses import MSE, CrossEntropy

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
BACKPROP = DOCS / "backprop.md"
EXTENDING = DOCS / "extending.md"

CODE_LINK = re.compile(r"\[`([A-Za-z_][\w.]*)`\]\((\.\./minilearn/[\w/]+\.py)\)")
ANY_LINK = re.compile(r"\]\(([^)#\s]+)\)")
TITLED_BLOCK = re.compile(r'```(\w+) title="([^"]+)"\n(.*?)```', re.S)
UNTITLED_BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.S)


def defined_names(path):
    """Return {name: set of method names} for classes and {name: None} for functions of a module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            names[node.name] = {item.name for item in node.body
                                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))}
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names[node.name] = None
    return names


# backprop.md


def test_backprop_links_name_real_functions():
    links = CODE_LINK.findall(BACKPROP.read_text(encoding="utf-8"))

    assert len(links) >= 25
    for name, relative in links:
        path = (DOCS / relative).resolve()
        assert path.is_file(), relative
        names = defined_names(path)
        owner, _, member = name.partition(".")
        assert owner in names, f"{name} not defined in {relative}"
        if member:
            assert names[owner] is not None and member in names[owner], \
                f"{name} not defined in {relative}"


@pytest.mark.parametrize("document", sorted(DOCS.glob("*.md")), ids=lambda path: path.name)
def test_relative_links_exist(document):
    for target in ANY_LINK.findall(document.read_text(encoding="utf-8")):
        if "://" in target:
            continue
        assert (document.parent / target).exists(), f"{document.name} links to missing {target}"


def mse_table_rows():
    text = BACKPROP.read_text(encoding="utf-8")
    section = text.split("## MSE after a softmax", 1)[1]
    return [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in section.splitlines() if re.match(r"\|\s*\d+\s*\|", line)]


def test_backprop_mse_table_recomputed():
    rows = mse_table_rows()

    assert [row[0] for row in rows] == ["0", "2", "5", "10", "20"]
    for row in rows:
        margin = float(row[0])
        logits = np.array([[0.0, margin, 0.0]])
        targets = np.array([0])

        cross_entropy = CrossEntropy()
        ce_loss = cross_entropy.forward(logits, targets)
        ce_grad = cross_entropy.backward()
        softmax = Softmax()
        probabilities = softmax.forward(logits)
        mse = MSE()
        mse_loss = mse.forward(probabilities, targets)
        mse_grad = softmax.backward(mse.backward())

        expected = [probabilities[0, 0], ce_loss, np.abs(ce_grad).max(), mse_loss,
                    np.abs(mse_grad).max()]
        for cell, value in zip(row[1:], expected):
            assert float(cell) == pytest.approx(value, rel=6e-3), (row[0], cell, value)


def test_backprop_mse_gradient_formula():
    for margin in (2.0, 5.0, 10.0):
        softmax = Softmax()
        probabilities = softmax.forward(np.array([[0.0, margin, 0.0]]))
        mse = MSE()
        mse.forward(probabilities, np.array([0]))
        grad = softmax.backward(mse.backward())[0]
        eps = probabilities[0, 0]

        formula = (2 / 3) * np.array([eps * (-2 + 6 * eps - 6 * eps**2),
                                      (1 - 2 * eps) * (3 * eps - 6 * eps**2),
                                      eps * (-1 + 6 * eps - 6 * eps**2)])

        np.testing.assert_allclose(grad, formula, rtol=1e-9, atol=1e-15)


# extending.md


def titled_blocks():
    return {title: (language, code) for language, title, code
            in TITLED_BLOCK.findall(EXTENDING.read_text(encoding="utf-8"))}


def untitled_blocks(language):
    return [code for block_language, code in UNTITLED_BLOCK.findall(
        EXTENDING.read_text(encoding="utf-8")) if block_language == language]


def minilearn(*args, cwd, timeout=120):
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "minilearn", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def run_python(code, cwd):
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def write_walkthrough_files(directory):
    for title, (_language, code) in titled_blocks().items():
        (directory / title).write_text(code, encoding="utf-8")


def test_extending_files_match_examples():
    blocks = titled_blocks()

    assert set(blocks) == {"swish.py", "swish_moons.toml"}
    for title, (_language, code) in blocks.items():
        assert code == (DOCS / "examples" / title).read_text(encoding="utf-8"), title


def test_extending_walkthrough_runs(tmp_path):
    write_walkthrough_files(tmp_path)
    commands = [line for block in untitled_blocks("bash") for line in block.splitlines()
                if line.strip()]
    assert commands == ["minilearn check --plugin swish.py",
                        "minilearn run swish_moons.toml --out runs/swish"]

    outputs = []
    for command in commands:
        program, *args = shlex.split(command)
        assert program == "minilearn"
        result = minilearn(*args, cwd=tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        outputs.append(result.stdout)

    assert "swish" in outputs[0]
    assert "FAIL" not in outputs[0]
    assert "1 class checked: 10 checks, 0 failed" in outputs[0]
    assert "status: completed" in outputs[1]
    metrics = json.loads((tmp_path / "runs" / "swish" / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] > 0.9


def test_extending_python_block_runs(tmp_path):
    write_walkthrough_files(tmp_path)
    [code] = untitled_blocks("python")

    result = run_python(code, tmp_path)

    assert result.returncode == 0, result.stderr
    assert "gradient[beta]" in result.stdout


def test_extending_run_repeats_elsewhere(tmp_path):
    write_walkthrough_files(tmp_path)
    first = minilearn("run", "swish_moons.toml", "--out", "runs/swish", "--quiet", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    saved = tomllib.loads((tmp_path / "runs" / "swish" / "config.toml").read_text())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    second = minilearn("run", tmp_path / "runs" / "swish" / "config.toml", "--out", "again",
                       "--quiet", cwd=elsewhere)

    assert second.returncode == 0, second.stderr
    assert saved["plugins"] == [str((tmp_path / "swish.py").resolve())]
    first_metrics = json.loads((tmp_path / "runs" / "swish" / "metrics.json").read_text())
    second_metrics = json.loads((elsewhere / "again" / "metrics.json").read_text())
    assert first_metrics["test"] == second_metrics["test"]


def test_extending_sign_flip_fails_check(tmp_path):
    write_walkthrough_files(tmp_path)
    plugin = tmp_path / "swish.py"
    correct = "return grad_output * (s + beta * x * slope)"
    assert correct in plugin.read_text()
    plugin.write_text(plugin.read_text().replace(correct, "return -grad_output * (s + beta * x * slope)"))

    result = minilearn("check", "--plugin", "swish.py", cwd=tmp_path)

    assert result.returncode == 1
    row = next(line for line in result.stdout.splitlines() if "gradient[input]" in line)
    assert row.split()[3:5] == ["FAIL", "2"]
    assert "1 failed" in result.stdout


@pytest.mark.parametrize("table_line, replacement", [
    ('type = "swish"\n', 'type = "leaky_relu"\nnegative_slope = "a"\n'),
    ('type = "swish"\n', 'type = "swish"\nbta = 1.0\n'),
])
def test_extending_quoted_errors(tmp_path, table_line, replacement):
    write_walkthrough_files(tmp_path)
    config = tmp_path / "swish_moons.toml"
    config.write_text(config.read_text().replace(table_line, replacement, 1))

    result = minilearn("run", "swish_moons.toml", "--out", "runs/bad", cwd=tmp_path)

    assert result.returncode == 2
    message = result.stderr.strip().split(": ", 3)[-1]
    assert f"`{message}`" in EXTENDING.read_text(encoding="utf-8"), message
