"""Big-data benchmarks: Gaussian nested models fitted from sufficient statistics computed by Dask.

Not part of the tests. Three modes (results in benchmarks/README.md):

    python benchmarks/big_data.py fit --rows 10_000_000            # Parquet written here, then hb.fit on it
    python benchmarks/big_data.py sampling --rows 1e5 1e6 1e7      # sampling time after the statistics pass
    python benchmarks/big_data.py gradient --rows 1e4 1e5 1e6      # log density + gradient time vs n

``fit`` writes partitioned Parquet (1M rows per file) of
``y = 1 + 0.5 x1 - 0.3 x2 + u_school + u_class + e`` with ~5,000 schools and ~50,000 classes
(three levels: pupils in classes in schools), then times ``hb.fit(formula, "dir/*.parquet")`` on a
LocalCluster sized to the machine (or ``--workers``), and reports the client process's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

FORMULA = "y ~ x1 + x2 + (1 | school/class)"


def simulate(rows: int, seed: int, classes: int = 50_000, schools: int = 5_000, start: int = 0) -> pd.DataFrame:
    """``rows`` pupils; class ``c`` lies in school ``c % schools``; effects fixed by ``seed``."""
    fixed = np.random.default_rng(seed)
    u_school = fixed.normal(0, 0.7, schools)
    u_class = fixed.normal(0, 0.4, classes)
    rng = np.random.default_rng([seed, start])
    cls = rng.integers(0, classes, rows)
    school = cls % schools
    x1 = rng.normal(0, 1, rows)
    x2 = rng.integers(0, 2, rows).astype(float)
    y = 1.0 + 0.5 * x1 - 0.3 * x2 + u_school[school] + u_class[cls] + rng.normal(0, 1.0, rows)
    return pd.DataFrame({"y": y, "x1": x1, "x2": x2, "school": school.astype(np.int32), "class": cls.astype(np.int32)})


def write_parquet(folder: Path, rows: int, seed: int, per_file: int = 1_000_000) -> float:
    folder.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    for k, start in enumerate(range(0, rows, per_file)):
        path = folder / f"part-{k:04d}.parquet"
        if not path.exists():
            simulate(min(per_file, rows - start), seed, start=start).to_parquet(path, index=False)
    return time.perf_counter() - t


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def mode_fit(args: argparse.Namespace) -> dict:
    import distributed

    import hierbayes as hb
    import hierbayes.inference.fit as fit_module

    rows = int(float(args.rows[0]))
    folder = Path(args.folder) / f"rows-{rows}"
    t_write = write_parquet(folder, rows, args.seed)
    timings: dict[str, float] = {}
    original = fit_module.make_design_dask

    def timed(*a, **k):  # time the statistics pass inside hb.fit
        t = time.perf_counter()
        out = original(*a, **k)
        timings["statistics"] = time.perf_counter() - t
        return out

    fit_module.make_design_dask = timed
    cluster_kw = {"n_workers": args.workers, "threads_per_worker": 1} if args.workers else {}
    t0 = time.perf_counter()
    with (
        distributed.LocalCluster(dashboard_address=":0", **cluster_kw) as cluster,
        distributed.Client(cluster) as client,
    ):
        t_cluster = time.perf_counter() - t0
        t = time.perf_counter()
        fit = hb.fit(FORMULA, str(folder / "*.parquet"), draws=args.draws, tune=args.tune, chains=args.chains,
                     random_seed=args.seed, progressbar=False)
        t_fit = time.perf_counter() - t
        n_workers = len(cluster.workers)
        worker_rss = client.run(peak_rss_mb)  # peak RSS of each worker process
    post = fit.posterior
    return {
        "mode": "fit", "rows": rows, "write_parquet_s": round(t_write, 1), "cluster_start_s": round(t_cluster, 1),
        "workers": n_workers, "statistics_s": round(timings["statistics"], 1),
        "fit_total_s": round(t_fit, 1), "after_statistics_s": round(t_fit - timings["statistics"], 1),
        "client_peak_rss_mb": round(peak_rss_mb()),
        "worker_peak_rss_mb": [round(v) for v in worker_rss.values()],
        "draws": f"{args.chains} x {args.draws} + {args.tune}",
        "levels": [g.n_levels for g in fit.design.groups],
        "beta": np.round(post["beta"].mean(("chain", "draw")).values, 3).tolist(),
        "sd": [round(float(post[f"sd_{g.name}"].mean()), 3) for g in fit.design.groups],
        "sigma": round(float(post["sigma"].mean()), 3),
    }


def mode_sampling(args: argparse.Namespace) -> list[dict]:
    """Statistics pass on Dask (Parquet), then model building and sampling timed apart."""
    import distributed

    import hierbayes as hb
    from hierbayes.inference.collapsed.build import add_random_effects, build_collapsed_model
    from hierbayes.inference.sampling import sample

    out = []
    cluster_kw = {"n_workers": args.workers, "threads_per_worker": 1} if args.workers else {}
    with distributed.LocalCluster(dashboard_address=":0", **cluster_kw) as cluster, distributed.Client(cluster):
        for r in args.rows:
            rows = int(float(r))
            folder = Path(args.folder) / f"rows-{rows}"
            write_parquet(folder, rows, args.seed)
            t = time.perf_counter()
            design = hb.make_design_dask(hb.parse_formula(FORMULA), str(folder / "*.parquet"), random_seed=args.seed)
            t_stats = time.perf_counter() - t
            t = time.perf_counter()
            model = build_collapsed_model(design)
            t_build = time.perf_counter() - t
            t = time.perf_counter()
            idata = sample(model, draws=args.draws, tune=args.tune, chains=args.chains, random_seed=args.seed,
                           progressbar=False)
            t_sample = time.perf_counter() - t
            t = time.perf_counter()
            add_random_effects(idata, design, random_seed=args.seed)
            out.append({"mode": "sampling", "rows": rows, "statistics_s": round(t_stats, 1),
                        "build_s": round(t_build, 2), "sampling_s": round(t_sample, 1),
                        "random_effect_draws_s": round(time.perf_counter() - t, 1),
                        "levels": [g.n_levels for g in design.groups],
                        "draws": f"{args.chains} x {args.draws} + {args.tune}"})
            print(json.dumps(out[-1]), flush=True)
    return out


def mode_gradient(args: argparse.Namespace) -> list[dict]:
    import hierbayes as hb
    from hierbayes.inference.collapsed.build import build_collapsed_model

    out = []
    for r in args.rows:
        rows = int(float(r))
        design = hb.make_design(hb.parse_formula(FORMULA), simulate(rows, args.seed, classes=5_000, schools=500))
        model = build_collapsed_model(design)
        logp, dlogp = model.compile_logp(), model.compile_dlogp()
        point = model.initial_point()
        for fn in (logp, dlogp):
            fn(point)
        reps = 200
        t = time.perf_counter()
        for _ in range(reps):
            logp(point)
            dlogp(point)
        per = (time.perf_counter() - t) / reps * 1e3
        out.append({"mode": "gradient", "rows": rows, "levels": [g.n_levels for g in design.groups],
                    "logp_and_gradient_ms": round(per, 3)})
        print(json.dumps(out[-1]), flush=True)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["fit", "sampling", "gradient"])
    p.add_argument("--rows", nargs="+", default=["1e7"])
    p.add_argument("--folder", default="/tmp/hierbayes-bench")
    p.add_argument("--workers", type=int, default=None, help="LocalCluster workers (default: sized to the machine)")
    p.add_argument("--draws", type=int, default=500)
    p.add_argument("--tune", type=int, default=500)
    p.add_argument("--chains", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    result = {"fit": mode_fit, "sampling": mode_sampling, "gradient": mode_gradient}[args.mode](args)
    print(json.dumps(result), file=sys.stdout, flush=True)


if __name__ == "__main__":
    main()
