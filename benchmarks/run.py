"""hierbayes against bambi: wall time, minimum bulk ESS and ESS per second, on one machine.

Usage (from the repository root; ``make bench`` creates ``.bench-venv`` with bambi and runs it)::

    python benchmarks/run.py                       # everything, 4 chains x 1000 draws (+1000 tune)
    python benchmarks/run.py --cases achievement   # one case
    python benchmarks/run.py --cases crossed --no-bambi --method full   # the full model of a case
    python benchmarks/run.py --no-bambi            # hierbayes only
    python benchmarks/run.py --warm-only           # skip the fits with empty caches

Every fit runs in its own Python process (``--worker``), so one fit's compilation caches in
memory do not help the next. By default each tool fits each case twice: first **cold**, in a
process whose ``HOME``, ``XDG_CACHE_HOME`` and ``NUMBA_CACHE_DIR`` point at a new empty folder
(PyTensor's compiledir, numba's cache, JAX's persistent compilation cache and bambi's PyTensor C
cache all start empty: a new machine or a new user), then **warm**, a second fresh process with
the caches the cold run left (a user who has fitted a model before). ``--warm-only`` skips the
cold fits and uses the caller's own caches. The table shows both columns side by side, and the
ratio of hierbayes's minimum-ESS per second to bambi's for each.

Timed (the total of issue 11: import + build + compile + sampling): the tool's import in a fresh
process (``import hierbayes``; ``import bambi``, which imports PyMC and ArviZ), then everything
from building the model to having the posterior (hierbayes: ``hb.fit`` — design, model, the
imports of PyMC, JAX and ArviZ it makes on first use, compilation, sampling, the exact draws of
the random effects for the collapsed method and the diagnostics; bambi: ``bmb.Model(...)`` and
``.fit(...)``). Not timed: reading the data. The table's seconds and ratios include the import;
the lines under it give the ratios without it (model and fit only: hierbayes's lazy imports
still counted, bambi's not). ``import hierbayes`` alone has its own row. ESS: ArviZ bulk ESS,
minimum over the fixed effects and the variance parameters (random-effect sds, correlations,
residual sd).
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
SLEEPSTUDY = "Reaction ~ Days + (Days | Subject)"
CASES = ("sleepstudy", "achievement", "guatemalan", "crossed", "simulated")


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


def _case(case: str, hb, tool: str = "hierbayes"):
    """(data, formula, family) of a case, for hierbayes or bambi."""
    if case == "sleepstudy":
        return hb.datasets.load("sleepstudy"), SLEEPSTUDY, "gaussian"
    if case == "achievement":
        return hb.datasets.load("achievement"), ACHIEVEMENT, "gaussian"
    if case == "guatemalan":
        return hb.datasets.load("guatemalan"), GUATEMALAN_HB if tool == "hierbayes" else GUATEMALAN_BMB, "bernoulli"
    if case == "crossed":
        return crossed_data(), CROSSED, "gaussian"
    if case == "simulated":
        return simulated_data(), SIMULATED, "gaussian"
    raise SystemExit(f"unknown case {case!r}; cases: {', '.join(CASES)}")


def _worker_import() -> dict:
    t0 = time.perf_counter()
    import hierbayes  # noqa: F401

    return {"case": "import", "tool": "import hierbayes", "total_s": time.perf_counter() - t0}


def _worker_hierbayes(case: str, args) -> dict:
    t_import = time.perf_counter()
    import hierbayes as hb

    t_import = time.perf_counter() - t_import
    import numpy as np

    kw = {"chains": args.chains, "draws": args.draws, "tune": args.tune, "random_seed": args.seed}
    kw.update(progressbar=False, cores=args.cores, sampler=args.sampler)
    data, formula, family = _case(case, hb)
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
        "max_rhat": float(max(float(__import__("arviz").rhat(post[n]).max()) for n in names)),
        "fit_s": total,
        "import_s": t_import,
        "total_s": t_import + total,
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
    t_import = time.perf_counter()
    import bambi as bmb

    t_import = time.perf_counter() - t_import
    import hierbayes as hb

    if case == "simulated":
        raise SystemExit("bambi is not run on the simulated case")
    data, formula, family = _case(case, hb, tool="bambi")
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
        "max_rhat": float(max(float(__import__("arviz").rhat(post[n]).max()) for n in names)),
        "fit_s": total,
        "import_s": t_import,
        "total_s": t_import + total,
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


def _cold_env(base: dict) -> dict:
    """An environment whose every compilation cache starts empty (a new user on a new machine)."""
    tmp = tempfile.mkdtemp(prefix="hb-bench-")
    env = dict(base)
    env["HOME"] = tmp
    env["XDG_CACHE_HOME"] = f"{tmp}/.cache"
    env["NUMBA_CACHE_DIR"] = f"{tmp}/numba"
    flags = [f for f in env.get("PYTENSOR_FLAGS", "").split(",") if f and not f.startswith("base_compiledir")]
    env["PYTENSOR_FLAGS"] = ",".join([*flags, f"base_compiledir={tmp}/pytensor"])
    return env


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def _table(rows: list[dict]) -> str:
    """One row per case and tool: cold and warm side by side, with the ratios to bambi."""
    head = (
        f"{'case':<12} {'tool':<40} {'cold s':>7} {'warm s':>7} {'import':>6} {'min ESS':>8} {'ESS/s cold':>10} "
        f"{'ESS/s warm':>10} {'div':>4} {'R-hat':>6}  {'vs bambi cold':>13} {'vs bambi warm':>13}  min-ESS parameter"
    )
    out = [head, "-" * len(head)]
    for case in dict.fromkeys(r["case"] for r in rows):
        group = [r for r in rows if r["case"] == case]
        bambi = [r for r in group if r["tool"].startswith("bambi")]
        for r in group:
            if case == "import":
                out.append(
                    f"{case:<12} {r['tool']:<40} {_fmt(r.get('cold_s'), '7.2f')} {_fmt(r.get('warm_s'), '7.2f')}"
                )
                continue
            rate = {k: (r["min_ess"] / r[f"{k}_s"] if r.get(f"{k}_s") else None) for k in ("cold", "warm")}
            ratio = {}
            for k in ("cold", "warm"):
                parts = []
                for b in bambi:
                    if r is not b and rate[k] and b.get(f"{k}_s") and r["tool"].startswith("hierbayes"):
                        parts.append(f"{rate[k] / (b['min_ess'] / b[f'{k}_s']):.1f}x")
                ratio[k] = " / ".join(parts)
            out.append(
                f"{case:<12} {r['tool']:<40} {_fmt(r.get('cold_s'), '7.1f')} {_fmt(r.get('warm_s'), '7.1f')} "
                f"{_fmt(r.get('warm_import_s'), '6.2f')} {r['min_ess']:>8.0f} "
                f"{_fmt(rate['cold'], '10.1f')} {_fmt(rate['warm'], '10.1f')} "
                f"{r['divergences']:>4} {r.get('max_rhat', float('nan')):>6.3f}  "
                f"{ratio['cold']:>13} {ratio['warm']:>13}"
                f"  {r['min_ess_param']}"
            )
    fit_only = []
    for case in dict.fromkeys(r["case"] for r in rows):
        group = [r for r in rows if r["case"] == case]
        for r in (r for r in group if r["tool"].startswith("hierbayes")):
            for b in (b for b in group if b["tool"].startswith("bambi")):
                parts = [
                    f"{k} {(b[f'{k}_fit_s'] / r[f'{k}_fit_s']) * (r['min_ess'] / b['min_ess']):.1f}x"
                    for k in ("cold", "warm")
                    if r.get(f"{k}_fit_s") and b.get(f"{k}_fit_s")
                ]
                if parts:
                    fit_only.append(f"  {case}: {r['tool']} vs {b['tool']}: {', '.join(parts)}")
    if fit_only:
        out += ["", "Ratios without the tools' imports (model and fit only; 'import' above: the warm run's import, s):"]
        out += fit_only
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", default=",".join(CASES), help=f"comma separated, from {', '.join(CASES)}")
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--tune", type=int, default=1000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--cores", type=int, default=None, help="cores for both tools (default: each tool's own)")
    p.add_argument("--method", default="auto", help="hierbayes method (auto, collapsed, full, ...)")
    p.add_argument("--sampler", default="auto", help="hierbayes sampler(s): auto,nutpie,pymc,numpyro")
    p.add_argument("--bambi-sampler", default="pymc", help="bambi inference_method(s), comma separated")
    p.add_argument("--no-bambi", action="store_true")
    p.add_argument("--warm-only", action="store_true", help="skip the cold fits; use the caller's caches")
    p.add_argument("--json", type=Path, default=None, help="also write the results to this file")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]

    if args.worker:
        if args.worker == "import":
            print(json.dumps(_worker_import()))
            return 0
        fn = _worker_hierbayes if args.worker == "hierbayes" else _worker_bambi
        print(json.dumps(fn(cases[0], args)))
        return 0

    base = dict(os.environ)
    print(
        f"{args.chains} chains x {args.draws} draws (+{args.tune} tuning), seed {args.seed}, "
        f"{os.cpu_count()} CPUs, {'warm caches only' if args.warm_only else 'cold and warm compilation caches'}",
        flush=True,
    )
    jobs: list[tuple[str, str, str]] = [("import", "import", "")]
    for case in cases:
        samplers = [s.strip() for s in args.sampler.split(",") if s.strip()]
        jobs += [(case, "hierbayes", s) for s in (samplers if case != "simulated" else samplers[:1])]
        if not args.no_bambi and case != "simulated":
            jobs += [(case, "bambi", s.strip()) for s in args.bambi_sampler.split(",")]
    rows: list[dict] = []
    for case, tool, which in jobs:
        key = "sampler" if tool == "hierbayes" else "bambi_sampler"
        sub = argparse.Namespace(**{**vars(args), key: which}) if which else args
        env = base if args.warm_only else _cold_env(base)
        result: dict | None = None
        for kind in ("warm",) if args.warm_only else ("cold", "warm"):
            print(f"  {tool} {which} on {case}, {kind} ...", flush=True)
            res = _run_worker(tool, case, sub, env)
            if res is None:
                break
            print(
                f"    {res['total_s']:.1f} s" + (f", min ESS {res['min_ess']:.0f}" if "min_ess" in res else ""),
                flush=True,
            )
            if result is None:
                result = res
            elif "min_ess" in res and abs(res["min_ess"] - result["min_ess"]) > 1e-6:
                print(f"    note: cold and warm draws differ (min ESS {result['min_ess']:.0f} vs {res['min_ess']:.0f})")
            result[f"{kind}_s"] = res["total_s"]
            if "fit_s" in res:
                result[f"{kind}_fit_s"] = res["fit_s"]
                result[f"{kind}_import_s"] = res["import_s"]
        if result is not None:
            rows.append(result)
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
