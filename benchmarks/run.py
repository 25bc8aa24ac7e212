"""hierbayes against bambi: wall time, minimum bulk ESS and ESS per second, on one machine.

Usage (from the repository root; ``make bench`` creates ``.bench-venv`` with bambi and runs it)::

    python benchmarks/run.py                       # everything, 4 chains x 1000 draws (+1000 tune)
    python benchmarks/run.py --cases achievement   # one case
    python benchmarks/run.py --cases crossed --no-bambi --method full   # the full model of a case
    python benchmarks/run.py --no-bambi            # hierbayes only

Every fit runs in its own Python process (``--worker``), so one fit's compilation caches in
memory do not help the next; disk caches (PyTensor's compiledir, numba's cache) are used as
they would be for a user who has fitted a model before. ``--cold`` points both at empty
temporary directories to include first-time compilation.

Timed: everything from building the model to having the posterior (hierbayes: ``hb.fit`` —
design, model, compilation, sampling, the exact draws of the random effects for the collapsed
method and the diagnostics; bambi: ``bmb.Model(...)`` and ``.fit(...)``). Not timed: imports and
reading the data. ESS: ArviZ bulk ESS, minimum over the fixed effects and the variance parameters
(random-effect sds, correlations, residual sd).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

ACHIEVEMENT = "math ~ year + retained + female + black + hispanic + size + lowinc + (1 | school) + (1 | child)"
GUATEMALAN_HB = "immun ~ kid2p + momEdPri + momEdSec + husEdPri + husEdSec + rural + pcInd81 + (1 | cluster/mom)"
# mother ids are unique across clusters, so (1 | cluster) + (1 | mom) is the same model for bambi
GUATEMALAN_BMB = GUATEMALAN_HB.replace("(1 | cluster/mom)", "(1 | cluster) + (1 | mom)")
SIMULATED = "y ~ x1 + x2 + (1 | g1/g2)"
SIM_TRUTH = {"Intercept": 1.0, "x1": 0.5, "x2": -0.3, "sd_g1": 0.5, "sd_g1:g2": 0.8, "sigma": 1.0}
CROSSED = "rt ~ cond + (1 | subj) + (1 | item)"


def crossed_data(seed: int = 16):
    """Subjects x items, fully crossed: 60 subjects x 40 items, one trial per pair (2,400 rows)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    n_subj, n_item = 60, 40
    subj, item = (a.ravel() for a in np.meshgrid(np.arange(n_subj), np.arange(n_item), indexing="ij"))
    cond = np.where(item % 2 == 0, -0.5, 0.5)
    rt = (
        600.0
        + 30.0 * cond
        + rng.normal(0, 40.0, n_subj)[subj]
        + rng.normal(0, 25.0, n_item)[item]
        + rng.normal(0, 50.0, subj.size)
    )
    return pd.DataFrame({"rt": rt, "cond": cond, "subj": [f"s{s}" for s in subj], "item": [f"i{i}" for i in item]})


def simulated_data(seed: int = 2024):
    """200,000 rows: 5,000 inner groups (g2) within 200 outer groups (g1), 40 rows each."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    n_outer, per_outer, per_inner = 200, 25, 40
    g1 = np.repeat(np.arange(n_outer), per_outer * per_inner)
    g2 = np.repeat(np.arange(n_outer * per_outer), per_inner)
    x1 = rng.normal(size=g1.size)
    x2_outer = rng.normal(size=n_outer)
    u1 = rng.normal(scale=SIM_TRUTH["sd_g1"], size=n_outer)
    u2 = rng.normal(scale=SIM_TRUTH["sd_g1:g2"], size=n_outer * per_outer)
    y = (
        SIM_TRUTH["Intercept"]
        + SIM_TRUTH["x1"] * x1
        + SIM_TRUTH["x2"] * x2_outer[g1]
        + u1[g1]
        + u2[g2]
        + rng.normal(scale=SIM_TRUTH["sigma"], size=g1.size)
    )
    return pd.DataFrame({"y": y, "x1": x1, "x2": x2_outer[g1], "g1": g1, "g2": g2 % per_outer})


# ----------------------------------------------------------------------------------------------
# Workers: one fit per process, result as one JSON line on stdout
# ----------------------------------------------------------------------------------------------


def _min_ess(post, names):
    import arviz as az

    ess = az.ess(post[names])
    best = ("", float("inf"))
    for name in ess.data_vars:
        da = ess[name]
        flat = da.values.ravel()
        import numpy as np

        ok = np.isfinite(flat)
        if not ok.any():
            continue
        k = int(np.nanargmin(np.where(ok, flat, np.inf)))
        if flat[k] < best[1]:
            label = name
            if da.ndim:
                idx = np.unravel_index(k, da.shape)
                label += "[" + ",".join(str(da[d].values[i]) for d, i in zip(da.dims, idx, strict=True)) + "]"
            best = (label, float(flat[k]))
    return best


def _worker_hierbayes(case: str, args) -> dict:
    import numpy as np

    import hierbayes as hb

    kw = {"chains": args.chains, "draws": args.draws, "tune": args.tune, "random_seed": args.seed}
    kw.update(progressbar=False, cores=args.cores, sampler=args.sampler)
    if case == "achievement":
        data, formula, family = hb.datasets.load("achievement"), ACHIEVEMENT, "gaussian"
    elif case == "guatemalan":
        data, formula, family = hb.datasets.load("guatemalan"), GUATEMALAN_HB, "bernoulli"
    elif case == "crossed":
        data, formula, family = crossed_data(), CROSSED, "gaussian"
    else:
        data, formula, family = simulated_data(), SIMULATED, "gaussian"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        fit = hb.fit(formula, data, family=family, method=args.method, **kw)
        total = time.perf_counter() - t0
    post = fit.posterior
    names = ["beta"] + [v for v in post.data_vars if v.startswith(("sd_", "corr_")) and not v.startswith("corr_chol")]
    names += ["sigma"] if "sigma" in post else []
    label, ess = _min_ess(post, names)
    out = {
        "case": case,
        "tool": f"hierbayes ({fit.settings['method']}, {fit.settings['sampler']})",
        "total_s": total,
        "min_ess": ess,
        "min_ess_param": label,
        "divergences": int(fit.idata["sample_stats"]["diverging"].sum()),
        "ess_size": float(__import__("arviz").ess(post["beta"].sel(coef="size")))
        if "size" in post["coef"].values
        else None,
    }
    if case == "simulated":
        eb = hb.empirical_bayes(formula, data)
        checks = {}
        for key, true in SIM_TRUTH.items():
            da = post["beta"].sel(coef=key) if key in post["coef"].values else post[key]
            da = da.squeeze(drop=True)
            m, s = float(da.mean()), float(da.std())
            if key in eb.fixed.index:
                ref = float(eb.fixed.loc[key, "estimate"])
            elif key == "sigma":
                ref = eb.sigma
            else:
                ref = float(eb.sd[key.removeprefix("sd_")].iloc[0])
            checks[key] = {"mean": m, "sd": s, "z_truth": (m - true) / s, "z_reml": (m - ref) / s}
        out["checks"] = checks
        out["rows"] = len(data)
        out["peak_rss_mb"] = __import__("resource").getrusage(__import__("resource").RUSAGE_SELF).ru_maxrss / 1024
        out["u_shape"] = list(np.shape(post["u_g1:g2"])) if "u_g1:g2" in post else None
    return out


def _worker_bambi(case: str, args) -> dict:
    import bambi as bmb

    import hierbayes as hb

    if case == "achievement":
        data, formula, family = hb.datasets.load("achievement"), ACHIEVEMENT, "gaussian"
    elif case == "guatemalan":
        data, formula, family = hb.datasets.load("guatemalan"), GUATEMALAN_BMB, "bernoulli"
    elif case == "crossed":
        data, formula, family = crossed_data(), CROSSED, "gaussian"
    else:
        raise SystemExit("bambi is not run on the simulated case")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        model = bmb.Model(formula, data, family=family)
        idata = model.fit(
            draws=args.draws,
            tune=args.tune,
            chains=args.chains,
            cores=args.cores,
            random_seed=args.seed,
            inference_method=args.bambi_sampler,
            progressbar=False,
        )
        total = time.perf_counter() - t0
    post = idata["posterior"].to_dataset() if hasattr(idata, "children") else idata.posterior
    parts = model.parameters if hasattr(model, "parameters") else model.components
    fixed = list(parts[model.family.likelihood.parent].common_terms)
    fixed = ["Intercept", *fixed] if "Intercept" in post else fixed
    names = fixed + [v for v in post.data_vars if v.endswith("_sigma") or v == "sigma"]
    label, ess = _min_ess(post, names)
    stats = idata["sample_stats"]
    return {
        "case": case,
        "tool": f"bambi {bmb.__version__} ({args.bambi_sampler})",
        "total_s": total,
        "min_ess": ess,
        "min_ess_param": label,
        "divergences": int(stats["diverging"].sum()),
        "ess_size": float(__import__("arviz").ess(post["size"])) if "size" in post else None,
    }


# ----------------------------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------------------------


def _run_worker(tool: str, case: str, args, env: dict) -> dict | None:
    cmd = [sys.executable, __file__, "--worker", tool, "--cases", case]
    cmd += ["--chains", str(args.chains), "--draws", str(args.draws), "--tune", str(args.tune)]
    cmd += ["--seed", str(args.seed), "--method", args.method, "--sampler", args.sampler]
    cmd += ["--bambi-sampler", args.bambi_sampler] + (["--cores", str(args.cores)] if args.cores else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        print(f"  {tool} on {case} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}", file=sys.stderr)
        return None
    return json.loads(lines[-1])


def _table(rows: list[dict]) -> str:
    head = f"{'case':<12} {'tool':<42} {'total s':>8} {'min ESS':>8} {'ESS/s':>8} {'div':>4}"
    head += f"  {'hb/bambi ESS/s':>14}  min-ESS parameter"
    out = [head, "-" * len(head)]
    for case in dict.fromkeys(r["case"] for r in rows):
        group = [r for r in rows if r["case"] == case]
        bambi = [r for r in group if r["tool"].startswith("bambi")]
        for r in group:
            rate = r["min_ess"] / r["total_s"]
            ratio = ""
            if r["tool"].startswith("hierbayes") and bambi:
                ratio = " / ".join(f"{rate / (b['min_ess'] / b['total_s']):.1f}x" for b in bambi)
            out.append(
                f"{case:<12} {r['tool']:<42} {r['total_s']:>8.1f} {r['min_ess']:>8.0f} {rate:>8.1f} "
                f"{r['divergences']:>4}  {ratio:>14}  {r['min_ess_param']}"
            )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", default="achievement,guatemalan,crossed,simulated")
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--tune", type=int, default=1000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--cores", type=int, default=None, help="cores for both tools (default: each tool's own)")
    p.add_argument("--method", default="auto", help="hierbayes method (auto, collapsed, full)")
    p.add_argument("--sampler", default="auto", help="hierbayes sampler(s): auto,nutpie,pymc,numpyro")
    p.add_argument("--bambi-sampler", default="pymc", help="bambi inference_method(s), comma separated")
    p.add_argument("--no-bambi", action="store_true")
    p.add_argument("--cold", action="store_true", help="empty compilation caches (first-time cost)")
    p.add_argument("--json", type=Path, default=None, help="also write the results to this file")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]

    if args.worker:
        fn = _worker_hierbayes if args.worker == "hierbayes" else _worker_bambi
        print(json.dumps(fn(cases[0], args)))
        return 0

    env = dict(os.environ)
    if args.cold:
        tmp = tempfile.mkdtemp(prefix="hb-bench-")
        flags = (env.get("PYTENSOR_FLAGS", ""), f"base_compiledir={tmp}/pytensor")
        env["PYTENSOR_FLAGS"] = ",".join(f for f in flags if f)
        env["NUMBA_CACHE_DIR"] = f"{tmp}/numba"
    print(
        f"{args.chains} chains x {args.draws} draws (+{args.tune} tuning), seed {args.seed}, "
        f"{os.cpu_count()} CPUs, {'cold' if args.cold else 'warm'} compilation caches",
        flush=True,
    )
    rows: list[dict] = []
    for case in cases:
        samplers = [s.strip() for s in args.sampler.split(",") if s.strip()]
        jobs = [("hierbayes", s) for s in (samplers if case != "simulated" else samplers[:1])]
        if not args.no_bambi and case != "simulated":
            jobs += [("bambi", s.strip()) for s in args.bambi_sampler.split(",")]
        for tool, which in jobs:
            key = "sampler" if tool == "hierbayes" else "bambi_sampler"
            sub = argparse.Namespace(**{**vars(args), key: which})
            print(f"  running {tool} ({which}) on {case} ...", flush=True)
            res = _run_worker(tool, case, sub, env)
            if res is not None:
                rows.append(res)
                print(f"    {res['total_s']:.1f} s, min ESS {res['min_ess']:.0f}", flush=True)
    print()
    print(_table(rows))
    for r in rows:
        if r.get("ess_size") is not None:
            print(f"ESS of the school-level coefficient 'size' ({r['case']}, {r['tool']}): {r['ess_size']:.0f}")
        if "checks" in r:
            print(f"\nSimulated nested data: {r['rows']} rows, peak RSS {r['peak_rss_mb']:.0f} MB, ", end="")
            print(f"u draws {r['u_shape']}")
            print(f"{'parameter':<10} {'truth':>7} {'mean':>8} {'sd':>7} {'z vs truth':>10} {'z vs REML':>10}")
            for key, c in r["checks"].items():
                print(
                    f"{key:<10} {SIM_TRUTH[key]:>7.3f} {c['mean']:>8.4f} {c['sd']:>7.4f} "
                    f"{c['z_truth']:>10.2f} {c['z_reml']:>10.3f}"
                )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
