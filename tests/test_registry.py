"""The registry, plugins, [[model.layers]] configs, the layer builder and the check command."""

import os
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import numpy as np
import pytest

from minilearn import layers
from minilearn.config import ConfigError, load_config, resolve_config, to_toml
from minilearn.plugins import PluginError, load_plugin, resolve_plugin
from minilearn.registry import LAYERS, LOSSES, Registry
from minilearn.runner import build_layers, build_model, run

REPO = Path(__file__).resolve().parent.parent

DOUBLE_PLUGIN = '''
import numpy as np

from minilearn.layers import Layer
from minilearn.registry import LAYERS

LOADS = globals().get("LOADS", 0) + 1


@LAYERS.register("test_double")
class Double(Layer):
    """out = [x, x]: twice the width, so dL/dx adds the gradients of both halves."""

    def forward(self, x):
        self._width = x.shape[1]
        return np.concatenate([x, x], axis=1)

    def backward(self, grad_output):
        return grad_output[:, :self._width] + grad_output[:, self._width:]
'''

MEAN_LOSS_WITHOUT_FACTOR = '''
import numpy as np

from minilearn.losses import CrossEntropy
from minilearn.registry import LOSSES


@LOSSES.register("test_no_mean")
class NoMean(CrossEntropy):
    """Cross-entropy whose gradient lacks the 1/N of the mean."""

    def backward(self, grad_output=None):
        grad = super().backward(grad_output)
        return grad * len(grad)
'''


@pytest.fixture
def double_plugin(tmp_path):
    path = tmp_path / "double.py"
    path.write_text(DOUBLE_PLUGIN)
    yield path
    if "test_double" in LAYERS:
        LAYERS.unregister("test_double")


def write(tmp_path, text, name="run.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def minilearn(*args, cwd=None):
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "minilearn", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


# Registry


def test_registry_rejects_taken_name():
    registry = Registry("thing")

    @registry.register("a")
    class First:
        pass

    with pytest.raises(ValueError, match="already registered"):
        @registry.register("a")
        class Second:
            pass

    assert registry.get("a") is First
    assert First.registered_name == "a"


def test_registry_allows_same_class_again():
    registry = Registry("thing")

    class Thing:
        pass

    registry.register("a")(Thing)
    registry.register("a")(Thing)

    assert registry.names() == ["a"]


def test_registry_unregister():
    registry = Registry("thing")

    class Thing:
        pass

    registry.register("a")(Thing)

    assert registry.unregister("a") is Thing
    assert "a" not in registry
    with pytest.raises(KeyError, match="not registered"):
        registry.unregister("a")


def test_registry_unknown_name_lists_names():
    with pytest.raises(ValueError, match="unknown layer 'nope'; expected one of linear"):
        LAYERS.get("nope")


def test_new_layers_in_registry():
    for name in ("leaky_relu", "elu", "softplus", "dropout", "batch_norm1d"):
        assert name in LAYERS


# Plugins


def test_plugin_file_registers_once(double_plugin):
    module = load_plugin(str(double_plugin))
    again = load_plugin(str(double_plugin))

    assert again is module
    assert module.LOADS == 1
    assert LAYERS.get("test_double") is module.Double


def test_plugin_path_relative_to_base_dir(double_plugin):
    resolved = resolve_plugin("double.py", base_dir=double_plugin.parent)

    assert resolved == str(double_plugin.resolve())


def test_plugin_imported_by_name_then_path(double_plugin, monkeypatch):
    monkeypatch.syspath_prepend(str(double_plugin.parent))
    monkeypatch.delitem(sys.modules, "double", raising=False)
    import double  # noqa: F401 - registers test_double under the module name "double"

    module = load_plugin(str(double_plugin))

    assert module is sys.modules["double"]
    assert LAYERS.get("test_double") is module.Double


def test_plugin_module_name(tmp_path, monkeypatch):
    package = tmp_path / "my_plugins"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "layers.py").write_text("VALUE = 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    module = load_plugin("my_plugins.layers")

    assert module.VALUE == 42


@pytest.mark.parametrize("spec, match", [
    ("missing.py", "plugin file 'missing.py' not found"),
    ("no_such_module_xyz", "plugin module 'no_such_module_xyz' not found"),
    ("not a module", "neither a .py file nor a module name"),
    ("", "must be a file path or a module name"),
])
def test_plugin_not_found(tmp_path, spec, match):
    with pytest.raises(PluginError, match=match):
        load_plugin(spec, base_dir=tmp_path)


def test_plugin_import_error_names_plugin(tmp_path):
    path = tmp_path / "broken.py"
    path.write_text("import numpy as np\nvalue = undefined_name\n")

    with pytest.raises(PluginError, match="failed to import: NameError") as caught:
        load_plugin(str(path))

    assert str(path) in str(caught.value)
    assert isinstance(caught.value.__cause__, NameError)


def test_plugin_taking_builtin_name_fails(tmp_path):
    path = tmp_path / "clash.py"
    path.write_text("from minilearn.layers import Layer\nfrom minilearn.registry import LAYERS\n"
                    "@LAYERS.register('relu')\nclass Mine(Layer):\n    pass\n")

    with pytest.raises(PluginError, match="already registered"):
        load_plugin(str(path))
    assert LAYERS.get("relu") is layers.ReLU


# Configs with plugins and layer tables


LAYERS_CONFIG = """
    [data]
    name = "moons"
    options = { n_samples = 200, noise = 0.2 }

    [[model.layers]]
    type = "linear"
    out_features = 8

    [[model.layers]]
    type = "leaky_relu"
    negative_slope = 0

    [[model.layers]]
    type = "linear"

    [training]
    epochs = 2
    """


def test_layers_config_resolves(tmp_path):
    config = load_config(write(tmp_path, LAYERS_CONFIG))

    assert config["model"]["layers"] == [
        {"type": "linear", "out_features": 8},
        {"type": "leaky_relu", "negative_slope": 0.0},
        {"type": "linear"},
    ]
    assert isinstance(config["model"]["layers"][1]["negative_slope"], float)
    assert config["plugins"] == []


def test_layers_config_round_trips_through_toml(tmp_path):
    config = load_config(write(tmp_path, LAYERS_CONFIG))

    text = to_toml(config)

    assert tomllib.loads(text) == config
    assert resolve_config(tomllib.loads(text)) == config


def test_layers_override(tmp_path):
    config = load_config(write(tmp_path, LAYERS_CONFIG),
                         ['model.layers=[{type="linear", out_features=4}, {type="elu"}, '
                          '{type="linear"}]'])

    assert [table["type"] for table in config["model"]["layers"]] == ["linear", "elu", "linear"]


def test_plugins_resolved_from_config_directory(tmp_path, double_plugin, monkeypatch):
    monkeypatch.chdir(tmp_path.parent)
    path = write(tmp_path, 'plugins = ["double.py"]\n'
                           '[[model.layers]]\ntype = "test_double"\n'
                           '[[model.layers]]\ntype = "linear"\n')

    config = load_config(path)

    assert config["plugins"] == [str(double_plugin.resolve())]
    assert config["model"]["layers"][0] == {"type": "test_double"}


@pytest.mark.parametrize("tables, message", [
    ('[{type = "leaky_relu", negative_slop = 0.1}, {type = "linear"}]',
     "unknown key 'model.layers[0].negative_slop' for layer 'leaky_relu' (its options: "
     "negative_slope); did you mean 'negative_slope'?"),
    ('[{type = "linear", out_features = 4}, {type = "leaky_relu", negative_slope = "a"}]',
     "model.layers[1].negative_slope = 'a' has type string; expected a number"),
    ('[{type = "leaky_relus"}]', "model.layers[0].type = 'leaky_relus' is not a known layer; "
                                 "did you mean 'leaky_relu'?"),
    ('[{out_features = 3}]', "model.layers[0] has no type"),
    ('[{type = "linear"}, {type = "relu"}, {type = "linear"}]',
     "model.layers[0].out_features is missing; only the last linear layer may leave it out"),
    ('[{type = "dropout", p = 1.5}, {type = "linear"}]',
     "model.layers[0].p = 1.5 is invalid: Dropout p must lie in [0.0, 1.0]"),
    ('[{type = "linear", dtype = "float32"}]',
     "model.layers[0].dtype cannot be set in a config, because it comes from model.dtype"),
    ('[{type = "dropout", rng = 3}, {type = "linear"}]',
     "model.layers[0].rng cannot be set in a config, because it comes from the seed"),
    ('[{type = "linear", init = "auto"}]', "model.layers[0].init = 'auto' is invalid"),
    ('[{type = "linear"}, {type = "softmax"}]',
     "model.layers ends with a softmax layer; remove it and set model.output = 'softmax'"),
    ('[{type = "linear"}, {type = "log_softmax"}]', "model.output = 'log_softmax'"),
    ('[3]', "model.layers = [3] has type array; expected a list of tables"),
    ('[{type = "batch_norm1d", momentum = "fast"}, {type = "linear"}]',
     "model.layers[0].momentum = 'fast' has type string; expected a number"),
    ('[{type = "batch_norm1d", momentum = 2.0}, {type = "linear"}]',
     "model.layers[0].momentum = 2.0 is invalid: BatchNorm1d momentum must lie in [0.0, 1.0]"),
])
def test_bad_layer_table_rejected(tmp_path, tables, message):
    path = write(tmp_path, "")

    with pytest.raises(ConfigError) as caught:
        load_config(path, [f"model.layers={tables}"])

    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
    assert str(caught.value).startswith(str(path))


def test_layers_and_hidden_conflict(tmp_path):
    with pytest.raises(ConfigError, match="model.layers and model.hidden are alternatives"):
        load_config(write(tmp_path, LAYERS_CONFIG), ["model.hidden=[4]"])


def test_layers_and_activation_conflict(tmp_path):
    with pytest.raises(ConfigError, match="model.activation = 'tanh' applies only to model.hidden"):
        load_config(write(tmp_path, LAYERS_CONFIG), ["model.activation=tanh"])


def test_missing_plugin_rejected(tmp_path):
    with pytest.raises(ConfigError, match=r"plugins\[0\]: plugin file 'gone.py' not found"):
        load_config(write(tmp_path, 'plugins = ["gone.py"]\n'))


def test_plugins_must_be_strings(tmp_path):
    with pytest.raises(ConfigError, match="plugins = \\[1\\] has type array; expected a list of "
                                          "strings"):
        load_config(write(tmp_path, "plugins = [1]\n"))


# Building models from layer tables


def tables(*entries):
    return [dict(entry) for entry in entries]


def test_build_infers_widths():
    built = build_layers(tables({"type": "linear", "out_features": 6}, {"type": "batch_norm1d"},
                                {"type": "relu"}, {"type": "linear"}),
                         n_features=4, n_classes=3, rng=np.random.default_rng(0),
                         dtype=np.dtype(np.float64))

    assert (built[0].in_features, built[0].out_features) == (4, 6)
    assert built[1].num_features == 6
    assert (built[3].in_features, built[3].out_features) == (6, 3)


def test_build_matches_shorthand():
    base = {"hidden": [], "activation": "relu", "output": "logits", "init": "auto",
            "dtype": "float64", "temperature": 1.0, "layers": []}
    shorthand = build_model(dict(base, hidden=[5]), 4, 3, np.random.default_rng(7))
    listed = build_model(dict(base, layers=tables({"type": "linear", "out_features": 5},
                                                  {"type": "relu"}, {"type": "linear"})),
                         4, 3, np.random.default_rng(7))
    x = np.random.default_rng(8).normal(size=(6, 4))

    assert shorthand.state_dict().keys() == listed.state_dict().keys()
    for name, value in shorthand.state_dict().items():
        np.testing.assert_array_equal(value, listed.state_dict()[name])
    np.testing.assert_array_equal(shorthand.forward(x), listed.forward(x))


def test_build_auto_init():
    built = build_layers(tables({"type": "linear", "out_features": 5}, {"type": "leaky_relu"},
                                {"type": "linear", "out_features": 5}, {"type": "tanh"},
                                {"type": "linear", "init": "he"}),
                         n_features=4, n_classes=3, rng=np.random.default_rng(0),
                         dtype=np.dtype(np.float64))

    assert [layer.init for layer in built if isinstance(layer, layers.Linear)] == \
        ["he", "glorot", "he"]


def test_build_float32_and_rng():
    built = build_layers(tables({"type": "linear", "out_features": 5}, {"type": "dropout"},
                                {"type": "linear"}),
                         n_features=4, n_classes=2, rng=np.random.default_rng(0),
                         dtype=np.dtype(np.float32))

    assert built[0].params["weight"].dtype == np.float32
    assert isinstance(built[1].rng, np.random.Generator)


def test_build_appends_output_layers():
    model_config = {"hidden": [], "activation": "relu", "output": "log_softmax", "init": "auto",
                    "dtype": "float64", "temperature": 2.0,
                    "layers": tables({"type": "linear"})}

    model = build_model(model_config, 4, 3, np.random.default_rng(0))

    assert [type(layer).__name__ for layer in model.layers] == \
        ["Linear", "Temperature", "LogSoftmax"]


@pytest.mark.parametrize("entries, message", [
    (({"type": "linear", "out_features": 5},),
     "model.layers[0].out_features = 5 but the data has 3 classes"),
    (({"type": "linear", "in_features": 7, "out_features": 3},),
     "model.layers[0].in_features = 7 but the previous layer outputs 4 features"),
    (({"type": "relu"},), "model.layers ends with 4 features per sample but the data has 3 "
                          "classes"),
    (({"type": "linear"}, {"type": "batch_norm1d", "num_features": 5}),
     "model.layers[1].num_features = 5 but the previous layer outputs 3 features"),
])
def test_build_rejects_width_mismatch(entries, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        build_layers(tables(*entries), n_features=4, n_classes=3, rng=np.random.default_rng(0),
                     dtype=np.dtype(np.float64))


def test_build_measures_plugin_width(double_plugin):
    load_plugin(str(double_plugin))

    built = build_layers(tables({"type": "linear", "out_features": 3}, {"type": "test_double"},
                                {"type": "linear"}),
                         n_features=4, n_classes=2, rng=np.random.default_rng(0),
                         dtype=np.dtype(np.float64))

    assert built[2].in_features == 6


def test_run_with_plugin_layer(tmp_path, double_plugin):
    config = load_config(write(tmp_path, 'plugins = ["double.py"]\n' + textwrap.dedent("""
        [data]
        name = "moons"
        options = { n_samples = 200, noise = 0.2 }

        [[model.layers]]
        type = "linear"
        out_features = 4

        [[model.layers]]
        type = "test_double"

        [[model.layers]]
        type = "batch_norm1d"

        [[model.layers]]
        type = "linear"

        [training]
        epochs = 3
        """)))

    result = run(config, out=tmp_path / "run", progress=False)

    assert result.status == "completed"
    assert result.test["accuracy"] > 0.5
    saved = tomllib.loads((tmp_path / "run" / "config.toml").read_text())
    assert saved["model"]["layers"][1] == {"type": "test_double"}


# The check command


def test_check_command_passes_builtins():
    result = minilearn("check")

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(LAYERS) + len(LOSSES)} classes checked" in result.stdout
    assert "FAIL" not in result.stdout


def test_check_command_names(tmp_path):
    result = minilearn("check", "elu", "nll")

    assert result.returncode == 0, result.stderr
    names = {line.split()[1] for line in result.stdout.splitlines()[1:-1]}
    assert names == {"elu", "nll"}


def test_check_command_fails_missing_mean_factor(tmp_path):
    (tmp_path / "no_mean.py").write_text(MEAN_LOSS_WITHOUT_FACTOR)

    result = minilearn("check", "--plugin", "no_mean.py", cwd=tmp_path)

    assert result.returncode == 1
    gradient_row = next(line for line in result.stdout.splitlines() if " gradient " in line)
    assert gradient_row.split()[:4] == ["loss", "test_no_mean", "gradient", "FAIL"]


def test_check_command_quiet_lists_failures(tmp_path):
    (tmp_path / "no_mean.py").write_text(MEAN_LOSS_WITHOUT_FACTOR)

    result = minilearn("check", "--plugin", "no_mean.py", "--quiet", cwd=tmp_path)

    assert result.returncode == 1
    rows = result.stdout.splitlines()[1:-1]
    assert rows
    assert all("FAIL" in row for row in rows)


def test_check_command_plugin_without_classes(tmp_path):
    (tmp_path / "empty.py").write_text("VALUE = 1\n")

    result = minilearn("check", "--plugin", "empty.py", cwd=tmp_path)

    assert result.returncode == 2
    assert "registered no layer or loss" in result.stderr


def test_check_command_unknown_name():
    result = minilearn("check", "no_such_layer")

    assert result.returncode == 2
    assert "unknown layer or loss 'no_such_layer'" in result.stderr
