"""The ``hierbayes`` command: fit a model card, rebuild a report, run the demo.

.. code-block:: text

    hierbayes fit models/achievement.toml --out results/achievement
    hierbayes report results/achievement/posterior.nc
    hierbayes demo

``fit`` writes ``posterior.nc`` (reload it with ``hb.load``), ``summary.txt``, ``summary.csv``
and ``report.html`` to the output folder, each file atomically; an existing, non-empty output
folder is never touched without ``--overwrite``. ``report`` rebuilds ``report.html`` from a
saved fit without sampling again (the same fit gives the same bytes). ``demo`` fits the bundled
three-level achievement model (the card ``models/achievement.toml``) and writes its results.

Exit status: 0 on success, 1 for an error in the inputs (the message says what to change),
2 for a command-line usage error.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hierbayes._version import __version__
from hierbayes.cards import OUTPUT_FILES, check_output_folder, demo_card, load_card, run_card
from hierbayes.exceptions import HierBayesError
from hierbayes.inference.sampling import SAMPLERS
from hierbayes.io import load
from hierbayes.report.page import report
from hierbayes.summaries.effects import summary

__all__ = ["build_parser", "main"]

_DEMO_OUT = "results/demo"


def _sampler_options(p: argparse.ArgumentParser) -> None:

    g = p.add_argument_group("sampler settings (override the card's [sampler] table)")
    g.add_argument("--draws", type=int, metavar="N", help="kept draws per chain")
    g.add_argument("--tune", type=int, metavar="N", help="tuning (warm-up) draws per chain, discarded")
    g.add_argument("--chains", type=int, metavar="N", help="number of independent chains")
    g.add_argument(
        "--seed",
        type=int,
        metavar="N",
        dest="random_seed",
        help="random seed; the same seed and sampler give the same draws",
    )
    g.add_argument(
        "--sampler",
        choices=SAMPLERS,
        help="NUTS implementation: auto (numpyro if JAX is installed, else nutpie), nutpie, pymc or numpyro",
    )
    g.add_argument(
        "--target-accept",
        type=float,
        metavar="P",
        dest="target_accept",
        help="NUTS target acceptance rate in (0, 1); raise it (0.95) when there are divergences",
    )
    g.add_argument(
        "--method",
        choices=("auto", "collapsed", "quadrature", "full"),
        help="auto (default): random effects integrated out (collapsed) for Gaussian models with one "
        "grouping factor or two nested ones, small groups' random intercepts integrated out by "
        "quadrature for Bernoulli/binomial/Poisson models, the full model otherwise; see hb.fit",
    )
    g.add_argument("--no-progress", action="store_true", help="do not show the sampler's progress bar")


def _output_options(p: argparse.ArgumentParser, default: str | None) -> None:
    where = f"default: {default}" if default else "default: results/<card name>"
    p.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help=f"output folder for posterior.nc, summary.txt, summary.csv and report.html ({where})",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the result files in an existing, non-empty output folder "
        "(without it such a folder is an error and nothing is written)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``hierbayes`` command."""
    parser = argparse.ArgumentParser(
        prog="hierbayes",
        description="Bayesian multilevel (hierarchical, mixed-effects) models on PyMC: fit a TOML model "
        "card, write the posterior, summary tables and a self-contained HTML report.",
        epilog="Examples:\n"
        "  hierbayes fit models/achievement.toml --out results/achievement\n"
        "  hierbayes fit models/sleepstudy.toml --draws 500 --chains 2 --seed 7\n"
        "  hierbayes report results/achievement/posterior.nc\n"
        "  hierbayes demo",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, help="run 'hierbayes COMMAND --help' for its options"
    )

    fit = sub.add_parser(
        "fit",
        help="fit the model of a TOML model card and write its results",
        description="Fit the model described by a TOML model card (see models/*.toml and hierbayes.cards) "
        "and write posterior.nc, summary.txt, summary.csv and report.html to the output folder. "
        "The summary is also printed.",
    )
    fit.add_argument("card", type=Path, help="the model card, e.g. models/achievement.toml")
    _output_options(fit, None)
    _sampler_options(fit)

    rep = sub.add_parser(
        "report",
        help="rebuild the HTML report from a saved fit (no sampling)",
        description="Rebuild report.html from a fit saved as posterior.nc (by 'hierbayes fit' or hb.save). "
        "Nothing is sampled again; the same saved fit always gives the same report.",
    )
    rep.add_argument("posterior", type=Path, help="a saved fit, e.g. results/achievement/posterior.nc")
    rep.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help="where to write the report (default: report.html next to the saved fit; "
        "an existing report there is replaced)",
    )

    demo = sub.add_parser(
        "demo",
        help="fit the bundled three-level achievement model and write its report",
        description="Fit the bundled three-level model of math achievement (tests within children within "
        "schools; the card models/achievement.toml) with a progress bar, print the summary and "
        "write the results and the report.",
    )
    _output_options(demo, _DEMO_OUT)
    _sampler_options(demo)
    return parser


def _version() -> str:

    return __version__


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    keys = ("draws", "tune", "chains", "random_seed", "sampler", "target_accept", "method")
    return {k: getattr(args, k) for k in keys if getattr(args, k) is not None}


def _run(card: Any, out: Path, args: argparse.Namespace) -> int:

    fit = run_card(card, out, overwrite=args.overwrite, progressbar=not args.no_progress, **_overrides(args))
    print(summary(fit))
    print()
    print(f"Results written to {out}/: {', '.join(OUTPUT_FILES)}")
    print(f"Open the report: {out / 'report.html'}")
    return 0


def _cmd_fit(args: argparse.Namespace) -> int:

    card = load_card(args.card)
    out = args.out if args.out is not None else Path("results") / card.name
    check_output_folder(out, overwrite=args.overwrite)  # before sampling: fail fast
    return _run(card, out, args)


def _cmd_demo(args: argparse.Namespace) -> int:

    out = args.out if args.out is not None else Path(_DEMO_OUT)
    check_output_folder(out, overwrite=args.overwrite)
    return _run(demo_card(), out, args)


def _cmd_report(args: argparse.Namespace) -> int:

    out = args.out if args.out is not None else args.posterior.parent / "report.html"
    if out.is_dir():
        out = out / "report.html"
    if not out.parent.is_dir():
        raise FileNotFoundError(f"Cannot write {out}: the folder {out.parent} does not exist.")
    fit = load(args.posterior)
    report(fit, out)
    print(f"Report written to {out}")
    return 0


def _show_warning(message: Warning | str, category: type[Warning], *_: Any, **__: Any) -> None:
    """Print warnings (convergence problems) as plain text, without the source line."""
    print(f"hierbayes: {category.__name__}: {message}", file=sys.stderr)


_COMMANDS = {"fit": _cmd_fit, "report": _cmd_report, "demo": _cmd_demo}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``hierbayes`` command with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")  # figures are only written to files

    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return _COMMANDS[args.command](args)
    except (HierBayesError, FileExistsError, FileNotFoundError, NotADirectoryError, ValueError) as err:
        print(f"hierbayes {args.command}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
