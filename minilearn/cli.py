"""The ``minilearn`` command line.

Bad input (a config, an option, a data set) prints one line on stderr and exits
with code 2, with no traceback. An interrupted run exits with 130, a diverged run
with 1. Heavy packages are imported inside the commands, so ``--help`` stays fast.
"""

import argparse
import logging
import sys

EXIT_OK = 0
EXIT_DIVERGED = 1
EXIT_FAILED = 1
EXIT_DIFFERENT = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

logger = logging.getLogger("minilearn")


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line and exit with code 2."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"minilearn: error: {message}; see {self.prog} --help\n")


def build_parser():
    parser = _Parser(
        prog="minilearn",
        description="Train softmax regression and MLP classifiers with hand-derived "
                    "backward passes, from TOML configs.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = commands.add_parser("run", help="train the run that a config describes",
                              description="Train the run that CONFIG describes and write a run "
                                          "directory with metrics, plots and the model.")
    run.add_argument("config", metavar="CONFIG", help="path of a TOML config, e.g. configs/mlp_digits.toml")
    run.add_argument("--out", metavar="DIR",
                     help="run directory to write (default: a new directory under runs/)")
    run.add_argument("--overwrite", action="store_true",
                     help="allow --out to name an existing non-empty directory")
    run.add_argument("--set", metavar="KEY.PATH=VALUE", action="append", default=[],
                     dest="overrides",
                     help="override one config value, read as TOML; repeatable, "
                          "e.g. --set optimizer.lr=0.05 --set model.hidden=[64]")
    run.add_argument("--unset", metavar="KEY.PATH", action="append", default=[],
                     dest="unsets",
                     help="remove one key that the config file sets, so its default applies "
                          "or it stops applying; repeatable, e.g. --unset optimizer.momentum "
                          "with --set optimizer.name=adam")
    run.add_argument("--quiet", action="store_true",
                     help="print only errors and the final summary; no progress bar")
    run.add_argument("--reference", action="store_true",
                     help="also fit scikit-learn's LogisticRegression or MLPClassifier on the "
                          "same split and record its test metrics (as [reference] sklearn = true)")

    compare = commands.add_parser(
        "compare", help="draw the curves of several runs in one figure and tabulate their metrics",
        description="Read the metrics.json of each RUN_DIR, draw their loss and accuracy per "
                    "epoch in one PNG and print a table of their final metrics.")
    compare.add_argument("run_dirs", metavar="RUN_DIR", nargs="+",
                         help="run directories written by minilearn run")
    compare.add_argument("--out", metavar="FILE", default="comparison.png",
                         help="PNG file to write (default: comparison.png in the current "
                              "directory, replaced if it exists)")
    compare.add_argument("--title", metavar="TEXT", help="title of the figure")

    bench = commands.add_parser(
        "bench", help="time one training epoch against the numpy floor and the peers",
        description="Time one training epoch of an MLP in minilearn, in numpy alone (the "
                    "floor), in scikit-learn and in PyTorch (when installed), in this process, "
                    "and print seconds per epoch with each row's ratio to minilearn.")
    bench.add_argument("--quick", action="store_true",
                       help="a small workload (2,000 samples, 1 round) that checks the benchmark "
                            "runs")
    bench.add_argument("--dtype", choices=("float32", "float64", "both"), default="both",
                       help="dtype of data and parameters (default: both)")
    bench.add_argument("--samples", type=int, help="training samples N (default 60000)")
    bench.add_argument("--features", type=int, help="features D (default 784)")
    bench.add_argument("--hidden", type=int, help="hidden ReLU units H (default 256)")
    bench.add_argument("--classes", type=int, help="classes K (default 10)")
    bench.add_argument("--batch-size", type=int, help="samples per step (default 128)")
    bench.add_argument("--repeats", type=int, help="epochs per row; the best is reported (default 5)")
    bench.add_argument("--no-sklearn", action="store_true", help="skip the scikit-learn row")
    bench.add_argument("--no-torch", action="store_true", help="skip the PyTorch row")
    bench.add_argument("--no-startup", action="store_true",
                       help="skip timing minilearn --help against importing numpy")
    bench.add_argument("--breakdown", action="store_true",
                       help="also time each part of minilearn's training step, in ms per epoch")
    bench.add_argument("--quiet", action="store_true",
                       help="print only the results, not the progress of the rounds")

    replay = commands.add_parser(
        "replay", help="rerun a run from its config.toml and compare the results bit for bit",
        description="Rerun RUN_DIR from its config.toml into a new directory and check that "
                    "every metric and parameter matches the original bit for bit. Exits with "
                    "1 and names the first difference when they differ.")
    replay.add_argument("run_dir", metavar="RUN_DIR", help="a run directory written by minilearn run")
    replay.add_argument("--out", metavar="DIR",
                        help="directory of the replay (default: RUN_DIR-replay-<time> beside it)")
    replay.add_argument("--overwrite", action="store_true",
                        help="allow --out to name an existing non-empty directory")
    replay.add_argument("--quiet", action="store_true", help="print only errors and the verdict")

    experiment = commands.add_parser(
        "experiment", help="run a flagship experiment: mse_vs_ce or stable_vs_naive",
        description="Run every (scenario, variant, seed) of an experiment as an ordinary run, "
                    "then write summary.json, summary.md and PNG figures into the output "
                    "directory. python experiments/NAME.py takes the same options.")
    experiment.add_argument("name", metavar="NAME", choices=("mse_vs_ce", "stable_vs_naive"),
                            help="the experiment: mse_vs_ce or stable_vs_naive")
    experiment.add_argument("--config", metavar="FILE",
                            help="experiment config (default: configs/experiments/NAME.toml)")
    experiment.add_argument("--out", metavar="DIR",
                            help="output directory (default: a new directory under runs/)")
    experiment.add_argument("--overwrite", action="store_true",
                            help="allow --out to name an existing non-empty directory")
    experiment.add_argument("--jobs", metavar="N", type=int, default=1,
                            help="runs trained in parallel by joblib; -1 for one per CPU core "
                                 "(default 1)")
    experiment.add_argument("--backend", metavar="NAME",
                            help="joblib backend, e.g. loky (default), threading, or dask once "
                                 "a Dask client is set up")
    experiment.add_argument("--quick", action="store_true",
                            help="the small budget of the config's [quick] table, in seconds")
    experiment.add_argument("--shared-lr", metavar="RATE", type=float,
                            help="give every run this learning rate instead of each variant's "
                                 "own from the config or the search")
    experiment.add_argument("--quiet", action="store_true",
                            help="print only errors and where the summary went")

    check = commands.add_parser(
        "check", help="run the check kit on registered layers and losses",
        description="Check registered layers and losses against their contract: gradients "
                    "against central differences, shapes and dtypes, side effects, "
                    "repeatability, save and load, seeds and train/eval modes. Prints one row "
                    "per check and exits with 1 when any check fails.")
    check.add_argument("names", metavar="NAME", nargs="*",
                       help="registered layer or loss names (default: all of them, or with "
                            "--plugin the ones that the plugins register)")
    check.add_argument("--plugin", metavar="FILE", action="append", default=[], dest="plugins",
                       help="Python file or module name to import first, so that the layers "
                            "and losses it registers can be checked; repeatable")
    check.add_argument("--seed", metavar="SEED", type=int, default=0,
                       help="seed of the sampled inputs and the built instances (default 0)")
    check.add_argument("--quiet", action="store_true",
                       help="print only the failed checks and the summary")

    explain = commands.add_parser(
        "explain", help="print a worked example of a gradient for numbers you choose",
        description="Print every step of TOPIC for the numbers given. softmax-ce: the "
                    "probabilities, the loss in nats and bits, the gradient with respect to "
                    "the logits by the Jacobian route and by the fused route, and a "
                    "central-difference check.")
    explain.add_argument("topic", metavar="TOPIC", choices=("softmax-ce",),
                         help="the worked example: softmax-ce")
    explain.add_argument("--logits", metavar="Z1,Z2,...", default="2.3,-1.2,0.7",
                         help="comma-separated logits of one sample (default 2.3,-1.2,0.7); "
                              "write --logits=-1,2,0 when the first one is negative")
    explain.add_argument("--target", metavar="Y", type=int, default=0,
                         help="the true class, an index into the logits (default 0)")
    return parser


def main(argv=None):
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        # argparse reports these from the top-level parser; point to the command's help.
        _command_parser(parser, args.command).error(
            f"unrecognized arguments: {' '.join(unknown)}")
    if args.version:
        from minilearn import __version__

        print(f"minilearn {__version__}")
        return EXIT_OK
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE

    _configure_logging(quiet=getattr(args, "quiet", False))
    handler = {"run": _command_run, "check": _command_check, "explain": _command_explain,
               "replay": _command_replay,
               "bench": _command_bench, "experiment": _command_experiment,
               "compare": _command_compare}[args.command]
    try:
        return handler(args)
    except (ValueError, TypeError) as error:
        message = " ".join(str(error).split())
        print(f"minilearn: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("minilearn: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:  # noqa: BLE001 - the run directory already records it
        logger.debug("unexpected error", exc_info=True)
        message = " ".join(str(error).split())
        print(f"minilearn: error: {type(error).__name__}: {message}", file=sys.stderr)
        return EXIT_FAILED


def _command_parser(parser, command):
    """Return the subparser of ``command``, or ``parser`` itself when there is none."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            return action.choices[command]
    return parser


def _configure_logging(quiet):
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def _command_run(args):
    from minilearn.config import load_config
    from minilearn.runner import run

    # --reference goes through the config, so config.toml records it and a rerun repeats it.
    overrides = list(args.overrides) + (["reference.sklearn=true"] if args.reference else [])
    config = load_config(args.config, overrides, args.unsets)
    result = run(config, out=args.out, overwrite=args.overwrite, config_path=args.config,
                 progress=not args.quiet)

    print(f"run directory: {result.path}")
    print(f"status: {result.status}")
    if result.test is not None:
        print(f"test accuracy: {result.test['accuracy']:.4f}  test loss: {result.test['loss']:.4f}")
    _print_reference(result.reference)
    if result.status == "diverged":
        print(f"minilearn: {result.message}", file=sys.stderr)
        return EXIT_DIVERGED
    if result.status == "interrupted":
        return EXIT_INTERRUPTED
    return EXIT_OK


def _print_reference(reference):
    record = (reference or {}).get("sklearn")
    if not record or not record.get("test"):
        return
    test = record["test"]
    print(f"scikit-learn {record['model']}: test accuracy: {test['accuracy']:.4f}  "
          f"test log-loss: {test['log_loss']:.4f}")


def _command_compare(args):
    from minilearn.compare import format_table, load_runs, write_comparison

    runs = load_runs(args.run_dirs)
    path = write_comparison(runs, args.out, title=args.title)
    print(format_table(runs))
    print(f"figure: {path}")
    return EXIT_OK


def _command_replay(args):
    from minilearn.replay import replay_run

    report = replay_run(args.run_dir, out=args.out, overwrite=args.overwrite)
    print(f"replay directory: {report.replay}")
    if report.identical:
        print("identical: every metric and parameter matches the original bit for bit")
        return EXIT_OK
    print(f"different: {report.differences[0]}")
    if len(report.differences) > 1:
        print(f"({len(report.differences) - 1} more difference(s))")
    for note in report.environment_notes:
        print(f"note: {note}")
    return EXIT_DIFFERENT


def _command_bench(args):
    from minilearn.benchmark import (Workload, describe_machine, format_breakdown, format_table,
                                     run_benchmark, time_startup, time_step_parts)

    workload = Workload(samples=2000, repeats=1) if args.quick else Workload()
    for name in ("samples", "features", "hidden", "classes", "batch_size", "repeats"):
        value = getattr(args, name)
        if value is not None:
            if value < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {value}")
            setattr(workload, name, value)
    if workload.classes < 2:
        raise ValueError(f"--classes must be at least 2, got {workload.classes}")
    if workload.samples < workload.classes:
        raise ValueError(f"--samples must be at least --classes ({workload.classes}) so that "
                         f"every class occurs, got {workload.samples}")
    dtypes = ("float32", "float64") if args.dtype == "both" else (args.dtype,)
    peers = [peer for peer, skip in (("sklearn", args.no_sklearn), ("torch", args.no_torch))
             if not skip]

    results = run_benchmark(workload, dtypes, peers)
    print(f"Machine: {describe_machine()}")
    print(format_table(results, workload))
    if not args.no_startup:
        help_seconds, numpy_seconds = time_startup(repeats=2 if args.quick else 5)
        print(f"- minilearn --help: {help_seconds:.3f} s against {numpy_seconds:.3f} s for "
              f"python -c \"import numpy\" (ratio {help_seconds / numpy_seconds:.2f}, best of "
              f"{2 if args.quick else 5}).")
    if args.breakdown:
        for result in results:
            X, y = workload.make_data(result.dtype)
            parts = time_step_parts(workload, X, y)
            print()
            print(format_breakdown(result.dtype, parts, result.seconds["floor"],
                                   workload.repeats))
    return EXIT_OK


def _command_experiment(args):
    from minilearn.experiments import run_experiment

    result = run_experiment(args.name, config=args.config, out=args.out, jobs=args.jobs,
                            backend=args.backend, quick=args.quick, overwrite=args.overwrite,
                            shared_lr=args.shared_lr)
    print(f"experiment directory: {result.out}")
    print(f"summary: {result.out / 'summary.md'}")
    print(f"wall time: {result.wall_seconds:.1f} s")
    return EXIT_OK


def _command_check(args):
    from minilearn.plugins import load_plugins
    from minilearn.registry import LAYERS, LOSSES
    from minilearn.testing import CheckReport, check_registered, format_reports

    import minilearn.layers  # noqa: F401 - importing them registers the built-in classes
    import minilearn.losses  # noqa: F401

    built_in = set(LAYERS) | set(LOSSES)
    load_plugins(args.plugins)
    names = args.names
    if not names and args.plugins:
        names = [name for name in list(LAYERS) + list(LOSSES) if name not in built_in]
        if not names:
            raise ValueError(f"{', '.join(args.plugins)} registered no layer or loss; decorate "
                             'the class with @LAYERS.register("name") or @LOSSES.register("name")')

    reports = check_registered(names or None, seed=args.seed)
    failed = [report for report in reports if not report.passed]
    if args.quiet:
        shown = [CheckReport(report.kind, report.name, report.failures) for report in failed]
    else:
        shown = reports
    if shown:
        print(format_reports(shown))

    checks = sum(len(report) for report in reports)
    failures = sum(len(report.failures) for report in reports)
    noun = "class" if len(reports) == 1 else "classes"
    print(f"{len(reports)} {noun} checked: {checks} checks, {failures} failed")
    return EXIT_FAILED if failed else EXIT_OK


def _command_explain(args):
    from minilearn.explain import explain

    print(explain(args.topic, logits=args.logits, target=args.target))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
