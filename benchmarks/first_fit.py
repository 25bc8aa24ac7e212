"""Time a first fit in a fresh process (issue 11): the import, then ``hb.fit``, then optionally a second fit.

    HOME=$(mktemp -d) NUMBA_CACHE_DIR=... python benchmarks/first_fit.py sleepstudy [--sampler numpyro] [--again]

Run it twice with the same empty ``HOME`` for the cold and the warm time. ``--again`` fits a
second time in the same process with new data of the same shapes (the response times 1.1 for
Gaussian models, the response of another seed's resample for the bernoulli one), to time the reuse of
the compiled program. Prints one line of ``key=value``.
"""

from __future__ import annotations

import argparse
import time

T0 = time.perf_counter()
import hierbayes as hb  # noqa: E402

T_IMPORT = time.perf_counter() - T0

CASES = {
    "sleepstudy": ("sleepstudy", "Reaction ~ Days + (Days | Subject)", {}),
    "achievement": (
        "achievement",
        "math ~ year + retained + female + black + hispanic + size + lowinc + (1 | school) + (1 | child)",
        {},
    ),
    "guatemalan": (
        "guatemalan",
        "immun ~ kid2p + momEdPri + momEdSec + husEdPri + husEdSec + rural + pcInd81 + (1 | cluster/mom)",
        {"family": "bernoulli"},
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("case", choices=sorted(CASES))
    parser.add_argument("--sampler", default="auto")
    parser.add_argument("--again", action="store_true")
    args = parser.parse_args()
    name, formula, kwargs = CASES[args.case]
    data = hb.datasets.load(name)
    started = time.perf_counter()
    fit = hb.fit(formula, data, random_seed=1, progressbar=False, sampler=args.sampler, **kwargs)
    first = time.perf_counter() - started
    out = f"case={args.case} sampler={fit.settings['sampler']} method={fit.settings['method']} "
    out += f"import={T_IMPORT:.2f} fit={first:.2f} total={time.perf_counter() - T0:.2f} ok={fit.diagnostics.ok}"
    if args.again:
        new = data.copy()
        response = formula.split("~")[0].strip()
        if kwargs.get("family") == "bernoulli":
            new[response] = new[response].sample(frac=1.0, random_state=2).to_numpy()
        else:
            new[response] = new[response] * 1.1
        started = time.perf_counter()
        hb.fit(formula, new, random_seed=1, progressbar=False, sampler=args.sampler, **kwargs)
        out += f" second_fit={time.perf_counter() - started:.2f}"
    print(out)


if __name__ == "__main__":
    main()
