"""``python -m tuning.search``: KerasTuner search over GiMeFive's family (or ResNets): Hyperband by default,
``--tuner bayesian`` (Bayesian optimisation) or ``--tuner random``.

Examples::

    python -m tuning.search --data fer2013=../shared/data/fer2013 --max-epochs 20 --out-dir runs/tuning
    python -m tuning.search --max-epochs 3 --max-trials 6          # on the synthetic faces
    python -m tuning.search --tuner bayesian --max-epochs 8 --max-trials 20 --data fer2013=...
    python -m fer_keras.train --hparams runs/tuning/fer/best_hparams.json --data fer2013=...

Re-running the same command continues an interrupted search. For a
distributed search run the same command on every machine with a shared
--out-dir and KERASTUNER_TUNER_ID (chief, tuner0, tuner1, ...),
KERASTUNER_ORACLE_IP and KERASTUNER_ORACLE_PORT set (see the README).
"""

from __future__ import annotations

import argparse
import sys

from fer_keras.cli import add_data_arguments, data_config
from fer_keras.data.readers.common import DatasetError
from tuning import DEFAULT_WORKER_TIMEOUT_S, FAMILIES, OBJECTIVE_NAMES, TUNER_NAMES
from tuning import SEARCH_DEFAULTS as D


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tuning.search", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--family", choices=FAMILIES, default=D["family"],
                   help="model family searched. Default: %(default)s")
    p.add_argument("--tuner", choices=TUNER_NAMES, default=D["tuner"],
                   help="hyperband: many short trials, the best continued (sizes itself from --max-epochs); "
                        "bayesian: a Gaussian process proposes each trial from the finished ones; random. "
                        "bayesian and random train --max-epochs per trial and need --max-trials or "
                        "--time-budget. Default: %(default)s")
    add_data_arguments(p)
    p.add_argument("--objective", default=D["objective"], choices=OBJECTIVE_NAMES,
                   help="what the search optimises. Default: %(default)s")
    p.add_argument("--max-epochs", type=int, default=D["max_epochs"],
                   help="Hyperband's max_epochs; the epochs of each bayesian or random trial. Default: %(default)s")
    p.add_argument("--factor", type=int, default=D["factor"], help="Hyperband reduction factor. Default: %(default)s")
    p.add_argument("--iterations", type=int, default=D["iterations"], help="Hyperband iterations. Default: %(default)s")
    p.add_argument("--max-trials", type=int, default=None, help="stop after this many trials")
    p.add_argument("--time-budget", type=float, default=None, help="stop starting trials after this many minutes")
    p.add_argument(
        "--out-dir", default=D["out_dir"], help="search directory (shared in distributed mode). Default: %(default)s"
    )
    p.add_argument("--project", default=D["project"], help="project name inside --out-dir. Default: %(default)s")
    p.add_argument(
        "--augment", default=",".join(D["augment"]),
        help="augmentations every trial uses (strength is searched). Default: %(default)s"
    )
    p.add_argument("--seed", type=int, default=D["seed"], help="search and split seed. Default: %(default)s")
    p.add_argument("--worker-timeout", type=float, default=DEFAULT_WORKER_TIMEOUT_S, metavar="SECONDS",
                   help="distributed search: a worker not heard from for this long (no trial asked for, no epoch "
                        "reported) is let go and its trial runs again on another worker; longer than an epoch. "
                        "Default: %(default)s")
    p.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2), help="Keras progress during trials")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from tuning.runner import SearchConfig, run_search

    try:
        config = SearchConfig(
            family=args.family,
            tuner=args.tuner,
            data=data_config(args, args.seed),
            objective=args.objective,
            max_epochs=args.max_epochs,
            factor=args.factor,
            iterations=args.iterations,
            max_trials=args.max_trials,
            time_budget_minutes=args.time_budget,
            out_dir=args.out_dir,
            project=args.project,
            seed=args.seed,
            augment=tuple(a for a in args.augment.split(",") if a and a != "none"),
            worker_timeout_s=args.worker_timeout,
        )
        result = run_search(config, verbose=args.verbose)
    except (DatasetError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if result is not None:
        print(result.table_text())
        print(f"best hyperparameters: {result.best_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
