"""Configs: defaults, type and range checks, overrides and the TOML round trip."""

import tomllib

import pytest

from minilearn.config import (
    SCHEMA,
    ConfigError,
    apply_overrides,
    describe_schema,
    load_config,
    parse_override,
    resolve_config,
    to_toml,
)


def write(tmp_path, text, name="run.toml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_empty_config_gets_every_default():
    config = resolve_config({})

    for dotted, _kind, default, _help in describe_schema():
        table = config
        *parents, key = dotted.split(".")
        for parent in parents:
            table = table[parent]
        if dotted != "data.options":
            assert table[key] == default, dotted
    assert config["loss"] == {"name": "cross_entropy", "reduction": "mean", "label_smoothing": 0.0}


def test_resolved_config_round_trips_through_toml(tmp_path):
    config = load_config(write(tmp_path, '[model]\nhidden = [8, 4]\n[data]\nname = "moons"\n'
                                         'options = { n_samples = 200, noise = 0.3 }\n'))

    text = to_toml(config)

    assert tomllib.loads(text) == config
    again = load_config(write(tmp_path, text, "again.toml"))
    assert again == config


def test_name_defaults_to_file_stem(tmp_path):
    assert load_config(write(tmp_path, "", "my_run.toml"))["name"] == "my_run"


def test_integer_accepted_for_float_key():
    config = resolve_config({"optimizer": {"lr": 1}})

    assert config["optimizer"]["lr"] == 1.0
    assert isinstance(config["optimizer"]["lr"], float)


@pytest.mark.parametrize("raw, match", [
    ({"optimiser": {}}, r"unknown key 'optimiser'; did you mean 'optimizer'\?"),
    ({"training": {"epoch": 5}}, r"unknown key 'training.epoch'; did you mean 'epochs'\?"),
    ({"model": {"hiden": [4]}}, r"did you mean 'hidden'\?"),
    ({"training": {"batch_size": 1e3}}, r"training.batch_size = 1000.0 has type float; expected an integer; write it as 1000"),
    ({"training": {"batch_size": 0}}, r"training.batch_size = 0 is invalid; expected an integer >= 1"),
    ({"training": {"epochs": 0}}, r"training.epochs = 0 is invalid; expected an integer >= 1"),
    ({"training": {"epochs": "10"}}, r"training.epochs = '10' has type string; expected an integer"),
    ({"optimizer": {"lr": 0.1, "momentun": 0.9}}, r"unknown key 'optimizer.momentun' for optimizer 'sgd' \(its options: .*\); did you mean 'momentum'\?"),
    ({"optimizer": {"lr": "1e-3"}}, r"optimizer.lr = '1e-3' has type string; expected a number; remove the quotes"),
    ({"optimizer": {"lr": 0.0}}, r"optimizer.lr = 0.0 is invalid; expected a value > 0"),
    ({"optimizer": {"lr": -0.1}}, r"optimizer.lr = -0.1 is invalid"),
    ({"optimizer": {"momentum": -1}}, r"optimizer.momentum = -1.0 is invalid: momentum must be >= 0"),
    ({"optimizer": {"name": "rmsprop"}}, r"optimizer.name = 'rmsprop' is not a known optimizer; expected one of sgd"),
    ({"optimizer": {"nesterov": True}}, r"optimizer.nesterov = true is invalid: nesterov=True needs momentum > 0"),
    ({"optimizer": {"nesterov": "yes"}}, r"optimizer.nesterov = 'yes' has type string; expected true or false"),
    ({"model": {"hidden": [64, 0]}}, r"model.hidden = \[64, 0\] is invalid; expected a list of positive layer sizes"),
    ({"model": {"hidden": 64}}, r"model.hidden = 64 has type integer; expected a list of integers"),
    ({"model": {"activation": "gelu"}}, r"model.activation = 'gelu' is invalid; expected one of 'relu', 'tanh', 'sigmoid', 'identity'"),
    ({"model": {"dtype": "float16"}}, r"model.dtype = 'float16' is invalid; expected one of 'float32', 'float64'"),
    ({"model": "big"}, r"model must be a table"),
    ({"data": {"name": "mnist"}}, r"data.name = 'mnist' is not a known dataset; expected one of iris, wine"),
    ({"data": {"name": "moons", "options": {"nois": 0.1}}}, r"unknown key 'data.options.nois' for dataset 'moons' \(its options: n_samples, noise\); did you mean 'noise'\?"),
    ({"data": {"name": "iris", "options": {"n_samples": 10}}}, r"unknown key 'data.options.n_samples' for dataset 'iris' \(its options: none\)"),
    ({"data": {"val_fraction": 0.5, "test_fraction": 0.5}}, r"leave no training set"),
    ({"data": {"test_fraction": 1.5}}, r"data.test_fraction = 1.5 is invalid; expected a fraction in \[0, 1\)"),
    ({"data": {"standardize": 1}}, r"data.standardize = 1 has type integer; expected true or false"),
    ({"loss": {"name": "hinge"}}, r"loss.name = 'hinge' is not a known loss; expected one of cross_entropy"),
    ({"loss": {"label_smothing": 0.1}}, r"unknown key 'loss.label_smothing' for loss 'cross_entropy' \(its options: .*\); did you mean 'label_smoothing'\?"),
    ({"loss": {"label_smoothing": 2.0}}, r"loss.label_smoothing = 2.0 is invalid: .*label_smoothing must lie in \[0.0, 1.0\]"),
    ({"loss": {"name": "nll"}}, r"loss 'nll' takes log_probabilities but model.output = 'logits' gives logits; set model.output = 'log_softmax'"),
    ({"training": {"on_nonfinite": "skip"}}, r"training.on_nonfinite = 'skip' is invalid; expected one of 'stop', 'continue'"),
    ({"seed": 1.5}, r"seed = 1.5 has type float; expected an integer"),
])
def test_bad_config_rejected_with_one_line(raw, match):
    with pytest.raises(ConfigError, match=match) as error:
        resolve_config(raw, source="bad.toml")

    message = str(error.value)
    assert message.startswith("bad.toml: ")
    assert "\n" not in message
    assert isinstance(error.value, ValueError)


def test_loss_output_conflict_names_the_fix():
    with pytest.raises(ConfigError, match=r"set model.output = 'logits'"):
        resolve_config({"loss": {"name": "cross_entropy"}, "model": {"output": "softmax"}})


def test_missing_file_and_syntax_error(tmp_path):
    with pytest.raises(ConfigError, match=r"nope.toml: config file not found"):
        load_config(tmp_path / "nope.toml")

    bad = write(tmp_path, "seed = 0\n[optimizer]\nlr = .5\n")
    with pytest.raises(ConfigError, match=r"invalid TOML: .*line 3"):
        load_config(bad)


@pytest.mark.parametrize("text, keys, value", [
    ("optimizer.lr=0.05", ["optimizer", "lr"], 0.05),
    ("model.dtype=float32", ["model", "dtype"], "float32"),
    ('model.dtype="float32"', ["model", "dtype"], "float32"),
    ("model.hidden=[64, 32]", ["model", "hidden"], [64, 32]),
    ("data.standardize=false", ["data", "standardize"], False),
    ("training.epochs=3", ["training", "epochs"], 3),
])
def test_parse_override(text, keys, value):
    assert parse_override(text) == (keys, value)


@pytest.mark.parametrize("overrides, match", [
    (["model.hiden=[4]"], r"unknown config key 'model.hiden'; did you mean 'hidden'\?"),
    (["optimiser.lr=0.1"], r"unknown config key 'optimiser'; did you mean 'optimizer'\?"),
    (["model.hidden=[64,"], r"the value is not valid TOML"),
    (["epochs"], r"expected key.path=value"),
    (["training..epochs=3"], r"empty part"),
])
def test_bad_override_rejected(overrides, match):
    with pytest.raises(ConfigError, match=match):
        apply_overrides({}, overrides)


def test_override_applies_and_is_checked(tmp_path):
    path = write(tmp_path, "[training]\nepochs = 5\n")

    assert load_config(path, ["training.epochs=7"])["training"]["epochs"] == 7
    with pytest.raises(ConfigError, match=r"training.epochs = 0 is invalid"):
        load_config(path, ["training.epochs=0"])


def test_named_section_overrides_reach_class(tmp_path):
    config = load_config(write(tmp_path, ""), ["loss.label_smoothing=0.1",
                                               "optimizer.momentum=0.9"])

    assert config["loss"]["label_smoothing"] == 0.1
    assert config["optimizer"]["momentum"] == 0.9
    with pytest.raises(ConfigError, match=r"unknown key 'optimizer.momentun' for optimizer 'sgd'"):
        load_config(write(tmp_path, ""), ["optimizer.momentun=0.9"])
    with pytest.raises(ConfigError, match=r"unknown key 'optimizer.lrate'.*did you mean 'lr'\?"):
        load_config(write(tmp_path, ""), ["optimizer.lrate=0.1"])


def test_schema_keys_have_help():
    for dotted, _kind, _default, help_text in describe_schema():
        assert help_text, dotted
    assert set(SCHEMA) == {"name", "seed", "plugins", "data", "model", "loss", "optimizer",
                           "training", "schedule", "early_stopping", "reference"}
