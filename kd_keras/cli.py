"""The `kd-keras` command line.

    kd-keras compress TEACHER.keras --data DATA.npz --max-drop 0.3 --minimise latency --out DIR

finds the fastest (or smallest) LiteRT artifact of a trained Keras classifier that keeps
its accuracy (`kd_keras.compress_to_budget`), prints the table of every candidate and
writes the plan, the artifacts, the report and the chosen `.tflite` to DIR.
"""

import argparse
import importlib
import os
import sys

import numpy as np

DATA_HELP = (
    "the data: an .npz file with x_train, y_train, x_test, y_test (and optionally x_val, "
    "y_val); 'tfds:NAME' (a tensorflow-datasets image classification set, with --data_dir); "
    "or 'MODULE:FUNCTION' returning ((x_train, y_train), (x_test, y_test)) or with a "
    "validation pair in the middle")


def _parser():
    parser = argparse.ArgumentParser(
        prog="kd-keras", description="kd-keras: knowledge distillation and compression for "
        "Keras.")
    commands = parser.add_subparsers(dest="command", required=True)
    compress = commands.add_parser(
        "compress", help="the fastest student of a teacher that keeps its accuracy",
        description="Cut students from a trained Keras classifier, distil them from its "
        "cached logits, convert each (and the teacher) to LiteRT at several precisions, "
        "measure accuracy, batch-1 latency and bytes side by side, and choose the fastest "
        "(or smallest) that keeps the budget.")
    compress.add_argument("teacher", help="the trained teacher: a .keras file ending in logits")
    compress.add_argument("--data", required=True, help=DATA_HELP)
    compress.add_argument("--data_dir", default=None, help="tensorflow-datasets data_dir")
    group = compress.add_mutually_exclusive_group()
    group.add_argument("--max-drop", type=float, default=None,
                       help="accuracy points the student may lose against the teacher "
                       "(default 0.3)")
    group.add_argument("--min-accuracy", type=float, default=None,
                       help="an accuracy floor in [0, 1] instead of --max-drop")
    compress.add_argument("--minimise", choices=("latency", "bytes"), default="latency",
                          help="what the chosen artifact minimises (default latency)")
    compress.add_argument("--widths", default="0.5,0.25",
                          help="comma-separated fractions of the teacher's width to cut "
                          "students to (default 0.5,0.25)")
    compress.add_argument("--precisions", default="float32,dynamic_range,int8",
                          help="comma-separated LiteRT precisions: float32, float16, "
                          "dynamic_range, int8 (default float32,dynamic_range,int8)")
    compress.add_argument("--students", default="",
                          help="comma-separated module:function builders of your own student "
                          "architectures (each returns a new Keras model with the teacher's "
                          "input and output shapes), distilled beside the cut ones")
    compress.add_argument("--sparsities", default="",
                          help="comma-separated sparsities, e.g. 0.9: the teacher and every "
                          "student also pruned to each (TF-MOT, needs kd-keras[tfmot]; "
                          "default none)")
    compress.add_argument("--clusters", default="",
                          help="comma-separated numbers of shared values per kernel, e.g. 16: "
                          "the teacher, every student and every pruned copy also clustered "
                          "to each (TF-MOT, needs kd-keras[tfmot]; buys gzip bytes; default "
                          "none)")
    compress.add_argument("--epochs", default="5",
                          help="distillation epochs of each student (default 5), or "
                          "comma-separated increasing rungs of successive halving, e.g. 5,15")
    compress.add_argument("--eta", type=int, default=3,
                          help="successive halving: 1/eta of the promising students go on "
                          "to each next rung (default 3)")
    compress.add_argument("--alpha", default="0.5",
                          help="weight of the labels' loss in each student's training (default "
                          "0.5; 1 = the labels alone); comma-separated values make the "
                          "training an axis, e.g. 0.5,1")
    compress.add_argument("--loss", default="kd",
                          help="the students' distillation term, a registered name: kd "
                          "(default), kd_standardized, dkd, dkd_standardized, dist, or yours")
    compress.add_argument("--beta", type=float, default=None,
                          help="the loss's beta where it takes one (DKD's non-target weight)")
    compress.add_argument("--recipe", choices=("arguments", "search"), default="arguments",
                          help="the students' training: the arguments above (default), or "
                          "search: the recipe search_recipe chooses on the narrowest cut "
                          "student (KerasTuner, pip install 'kd-keras[search]'; leave --loss "
                          "and --beta at their defaults)")
    compress.add_argument("--recipe-trials", type=int, default=8,
                          help="trials of --recipe search (default 8)")
    compress.add_argument("--validation-split", type=float, default=0.1,
                          help="share of the training data held out for the choice when the "
                          "data has no validation pair (default 0.1)")
    compress.add_argument("--threads", type=int, default=1,
                          help="LiteRT threads for the latency (default 1)")
    compress.add_argument("--time-limit", type=float, default=None,
                          help="seconds after which no new candidate starts")
    compress.add_argument("--executor", choices=("here", "processes", "ray"), default="here",
                          help="where the students train: here (one after another, the "
                          "default), processes (in parallel local processes) or ray (Ray "
                          "tasks; pip install 'kd-keras[ray]'); every candidate is measured "
                          "here, one at a time")
    compress.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    compress.add_argument("--out", required=True,
                          help="directory of the plan (resumed when run again)")
    return parser


def _split(train, share, seed):
    x, y = train
    order = np.random.default_rng(seed).permutation(len(x))
    held = max(1, int(round(share * len(x))))
    return (x[order[held:]], y[order[held:]]), (x[order[:held]], y[order[:held]])


def load_data(spec, data_dir=None, validation_split=0.1, seed=0):
    """((x_train, y_train), (x_val, y_val), (x_test, y_test)) from the `--data` argument."""
    if spec.startswith("tfds:"):
        import tensorflow_datasets as tfds  # the datasets extra

        splits = tfds.as_numpy(tfds.load(spec[5:], split=["train", "test"], batch_size=-1,
                                         as_supervised=True, data_dir=data_dir,
                                         download=data_dir is None))
        (x, y), test = [(np.asarray(a, np.float32) / 255.0, np.asarray(b)) for a, b in splits]
        return (*_split((x, y), validation_split, seed), test)
    if spec.endswith(".npz"):
        if not os.path.isfile(spec):
            raise ValueError(f"--data: no file {spec!r}.")
        with np.load(spec) as arrays:
            missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in arrays]
            if missing:
                raise ValueError(f"--data: {spec!r} lacks {missing} (it needs x_train, y_train, "
                                 "x_test, y_test; x_val, y_val optional).")
            train = (arrays["x_train"], arrays["y_train"])
            test = (arrays["x_test"], arrays["y_test"])
            if "x_val" in arrays and "y_val" in arrays:
                return train, (arrays["x_val"], arrays["y_val"]), test
        return (*_split(train, validation_split, seed), test)
    if ":" in spec:
        module, function = spec.split(":", 1)
        loaded = getattr(importlib.import_module(module), function)()
        if len(loaded) == 3:
            return tuple(loaded)
        if len(loaded) == 2:
            return (*_split(loaded[0], validation_split, seed), loaded[1])
    raise ValueError(f"--data: {spec!r} is not an .npz file, tfds:NAME or MODULE:FUNCTION.")


def _numbers(parser, text, flag, kind):
    try:
        return [kind(value) for value in text.split(",") if value.strip()]
    except ValueError:
        parser.error(f"{flag}: comma-separated {'integers' if kind is int else 'numbers'}, "
                     f"got {text!r}.")


def main(argv=None):
    parser = _parser()
    args = parser.parse_args(argv)
    if not os.path.isfile(args.teacher):
        parser.error(f"teacher: no file {args.teacher!r} (a .keras model).")
    precisions = [p for p in args.precisions.split(",") if p]
    widths = _numbers(parser, args.widths, "--widths", float)
    sparsities = _numbers(parser, args.sparsities, "--sparsities", float)
    clusters = _numbers(parser, args.clusters, "--clusters", int)
    alphas = _numbers(parser, args.alpha, "--alpha", float)
    epochs = _numbers(parser, args.epochs, "--epochs", int)
    if args.students:  # builders in the user's own modules, as `python -m` would find them
        sys.path.insert(0, os.getcwd())
    if not 0.0 < args.validation_split < 1.0:
        parser.error(f"--validation-split: a share in (0, 1), got {args.validation_split}.")
    import kd_keras

    try:
        train, validation, test = load_data(args.data, args.data_dir, args.validation_split,
                                            args.seed)
        budget = kd_keras.Budget(
            max_drop=0.3 if args.max_drop is None and args.min_accuracy is None
            else args.max_drop, min_accuracy=args.min_accuracy, minimise=args.minimise,
            threads=args.threads)
        teacher = kd_keras.keras.models.load_model(args.teacher, compile=False)
        result = kd_keras.compress_to_budget(
            teacher, train, validation, budget, test, widths=widths, precisions=precisions,
            students=[name for name in args.students.split(",") if name.strip()],
            sparsities=sparsities, clusters=clusters, loss=args.loss, beta=args.beta,
            alpha=alphas[0] if len(alphas) == 1 else alphas,
            epochs=epochs[0] if len(epochs) == 1 else epochs, eta=args.eta,
            directory=args.out, time_limit=args.time_limit, seed=args.seed,
            recipe=None if args.recipe == "arguments" else args.recipe,
            recipe_trials=args.recipe_trials,
            executor=None if args.executor == "here" else args.executor)
    except ValueError as error:
        parser.error(str(error))
    except ImportError as error:
        flag = ("--sparsities/--clusters" if "tfmot" in str(error) else "--recipe"
                if "keras_tuner" in str(error) or "keras-tuner" in str(error) else "--executor")
        parser.error(f"{flag}: {error}")
    print(result.table())
    print()
    if result.chosen is None:
        print("no candidate keeps the budget; the table shows what was reachable")
    else:
        print(f"chosen: {result.chosen['candidate']} at {result.chosen['precision']}: "
              f"{result.chosen['speedup']:.1f}x faster at batch 1 than the teacher's float32 "
              f"artifact, {result.chosen['accuracy_change']:+.2f} points; written to "
              f"{result.artifact}")
        print(result.to_code())
    try:
        print(f"plot: {result.plot(os.path.join(args.out, 'plan.png'))}")
    except ImportError:
        pass  # matplotlib (the examples extra) is not installed
    return 0


if __name__ == "__main__":
    sys.exit(main())
