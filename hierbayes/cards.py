r"""Model cards: one TOML file per analysis (data, model, priors, sampler settings).

A card is data, never code: it is read with :mod:`tomllib`, nothing in it is evaluated, formula
strings go through :func:`hierbayes.parse_formula` (whose transforms are a fixed whitelist) and a
builder is looked up by name in :data:`BUILDERS`. Unknown keys are errors.

Format
------
.. code-block:: toml

    name = "achievement"                      # optional; default: the file name
    description = "Three-level model ..."     # optional

    [data]
    dataset = "achievement"                   # a bundled data set (hb.datasets.available())
    # path = "mydata.csv"                     # or a CSV file, relative to the card
    # dropna = true                           # drop rows with missing values (default: error)

    [model]
    formula = "math ~ year + (1 | school) + (1 | child)"
    family = "gaussian"                       # optional; link = "logit" etc.
    # crossed = true                          # optional: separately listed factors are crossed
    # builder = "nested"                      # instead of formula: one of BUILDERS
    # [model.args]                            # the builder's keyword arguments
    # y = "math"
    # groups = ["school", "child"]
    # x = ["year"]

    [priors]                                  # optional; missing = data-scaled defaults
    fixed = { mean = 0.0, sd = 10.0 }         # beta ~ N(b, B): mean (b), sd or cov (B)
    group_sd = { dist = "halfnormal", scale = 1.0 }   # or [priors.group_sd.<group>]
    sigma = { dist = "halfstudentt", scale = 2.5, nu = 3 }
    lkj = { eta = 2.0 }

    [sampler]                                 # optional; the keywords of hb.fit
    draws = 1000
    tune = 1000
    chains = 4
    random_seed = 1
    target_accept = 0.8
    sampler = "auto"                          # "nutpie", "pymc", "numpyro"
    method = "auto"                           # "collapsed", "quadrature", "full" (see hb.fit)
    store_random_effects = true               # collapsed method: keep the draws of u

Running a card (:func:`run_card`, or ``hierbayes fit card.toml --out folder``) fits the model and,
given an output folder, writes ``posterior.nc`` (see :mod:`hierbayes.io`), ``summary.txt``,
``summary.csv`` and ``report.html`` (see :mod:`hierbayes.report.page`), each atomically.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pandas as pd

from hierbayes import datasets
from hierbayes.builders import glmm, group_means, nested, random_intercept, random_slopes
from hierbayes.exceptions import DataError, HierBayesError, SpecError
from hierbayes.inference.fit import fit
from hierbayes.inference.result import Fit
from hierbayes.inference.sampling import SAMPLERS
from hierbayes.inference.store import as_stored, regenerable_draws
from hierbayes.io import atomic_write_text, save
from hierbayes.report.page import report
from hierbayes.spec.formula import parse_formula
from hierbayes.spec.model import ModelSpec
from hierbayes.spec.serialise import priors_from_dict
from hierbayes.summaries.effects import summary

__all__ = [
    "BUILDERS",
    "DEMO_CARD",
    "OUTPUT_FILES",
    "Card",
    "CardError",
    "check_output_folder",
    "demo_card",
    "load_card",
    "parse_card",
    "run_card",
    "summary_table",
    "write_results",
]

#: The builders a card may name (``[model] builder = "..."``); nothing else can be called.
BUILDERS: Mapping[str, Callable[..., ModelSpec]] = MappingProxyType(
    {
        "group_means": group_means,
        "random_intercept": random_intercept,
        "random_slopes": random_slopes,
        "nested": nested,
        "glmm": glmm,
    }
)

#: The card of ``hierbayes demo``: the same as ``models/achievement.toml`` (a test checks they agree).
DEMO_CARD = """\
name = "achievement"
description = "Math achievement: test occasions within children within schools (three-level model)"

[data]
dataset = "achievement"

[model]
formula = "math ~ year + retained + female + black + hispanic + size + lowinc + (1 | school) + (1 | child)"
family = "gaussian"

[sampler]
draws = 1000
tune = 1000
chains = 4
random_seed = 1
"""

#: Files written to an output folder by :func:`write_results`.
OUTPUT_FILES = ("posterior.nc", "summary.txt", "summary.csv", "report.html")

_TOP_KEYS = ("name", "description", "data", "model", "priors", "sampler")
_DATA_KEYS = ("dataset", "path", "dropna")
_MODEL_KEYS = ("formula", "builder", "args", "family", "link", "centered", "crossed")
_SAMPLER_TYPES: dict[str, tuple[type, ...]] = {
    "draws": (int,),
    "tune": (int,),
    "chains": (int,),
    "random_seed": (int,),
    "target_accept": (float, int),
    "sampler": (str,),
    "cores": (int,),
    "method": (str,),
    "store_random_effects": (bool,),
}
#: Methods a card may ask for (``"reml"``/``"ml"`` give point estimates, not a posterior to save).
_CARD_METHODS = ("auto", "collapsed", "quadrature", "full")


class CardError(HierBayesError, ValueError):
    """A model card is malformed: unknown key, wrong type, missing table."""


def _check_keys(table: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
    unknown = [k for k in table if k not in allowed]
    if unknown:
        close = difflib.get_close_matches(unknown[0], allowed, n=1, cutoff=0.6)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise CardError(f"{where}: unknown key {unknown[0]!r}; allowed: {', '.join(allowed)}.{hint}")


def _table(doc: Mapping[str, Any], key: str, source: str, *, required: bool) -> dict[str, Any]:
    if key not in doc:
        if required:
            raise CardError(f"{source}: the card has no [{key}] table; add one (see hierbayes.cards).")
        return {}
    value = doc[key]
    if not isinstance(value, dict):
        raise CardError(f"{source}: {key} must be a table [{key}]; received {type(value).__name__}.")
    return value


@dataclass(frozen=True, kw_only=True)
class Card:
    """A parsed model card.

    Attributes
    ----------
    name, description
        For humans (the report's title).
    spec
        The model specification (priors included).
    dataset
        Name of a bundled data set, or ``None``.
    data_path
        Path of a CSV file (resolved against the card's folder), or ``None``.
    dropna
        Drop rows with missing values in the model's columns.
    crossed
        The separately listed grouping factors are crossed (no ``NestingWarning``; see
        :func:`hierbayes.make_design`).
    sampler
        Keyword arguments for :func:`hierbayes.fit` (``draws``, ``tune``, ``chains``, ...).
    path
        The card's own file, if it was read from one.
    """

    name: str
    description: str = ""
    spec: ModelSpec
    dataset: str | None = None
    data_path: Path | None = None
    dropna: bool = False
    crossed: bool = False
    sampler: Mapping[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "sampler", MappingProxyType(dict(self.sampler)))

    def load_data(self) -> pd.DataFrame:
        """Read the card's data (a bundled data set or the CSV file)."""
        if self.dataset is not None:
            if self.dataset not in datasets.available():
                raise DataError(
                    f"Model card {self.name!r}: no bundled data set {self.dataset!r}; bundled are "
                    f'{", ".join(datasets.available())}. Use path = "file.csv" in [data] for your own data.'
                )
            return datasets.load(self.dataset)
        assert self.data_path is not None
        if not self.data_path.is_file():
            raise DataError(f"Model card {self.name!r}: the data file {self.data_path} does not exist.")
        return pd.read_csv(self.data_path)

    def sampler_kwargs(self, **overrides: Any) -> dict[str, Any]:
        """The card's sampler settings with ``overrides`` (``None`` values ignored) applied."""
        out = dict(self.sampler)
        out.update({k: v for k, v in overrides.items() if v is not None})
        return out


def _data_part(table: dict[str, Any], base: Path | None, source: str) -> tuple[str | None, Path | None, bool]:
    _check_keys(table, _DATA_KEYS, f"{source}: [data]")
    has_ds, has_path = "dataset" in table, "path" in table
    if has_ds == has_path:
        raise CardError(
            f'{source}: [data] needs exactly one of dataset = "<name>" (bundled: '
            f'{", ".join(datasets.available())}) or path = "file.csv".'
        )
    dropna = table.get("dropna", False)
    if not isinstance(dropna, bool):
        raise CardError(f"{source}: [data] dropna must be true or false; received {dropna!r}.")
    if has_ds:
        name = table["dataset"]
        if not isinstance(name, str) or not name:
            raise CardError(f"{source}: [data] dataset must be a name; received {name!r}.")
        return name, None, dropna
    rel = table["path"]
    if not isinstance(rel, str) or not rel.lower().endswith(".csv"):
        raise CardError(f"{source}: [data] path must name a .csv file; received {rel!r}.")
    path = Path(rel)
    if not path.is_absolute():
        path = (base or Path.cwd()) / path
    return None, path, dropna


def _builder_args(builder: Callable[..., ModelSpec], name: str, args: Any, source: str) -> dict[str, Any]:
    if not isinstance(args, dict):
        raise CardError(f"{source}: [model.args] must be a table of the builder's arguments.")
    params = inspect.signature(builder).parameters
    allowed = tuple(p for p in params if p not in ("data", "priors"))
    _check_keys(args, allowed, f"{source}: [model.args] of builder {name!r}")
    for key, val in args.items():
        ok = isinstance(val, str | bool) or (isinstance(val, list) and all(isinstance(v, str) for v in val))
        if not ok:
            raise CardError(
                f"{source}: [model.args] {key} must be a column name, a list of names or true/false; received {val!r}."
            )
    return dict(args)


def _model_part(table: dict[str, Any], priors: Any, source: str) -> ModelSpec:
    _check_keys(table, _MODEL_KEYS, f"{source}: [model]")
    has_formula, has_builder = "formula" in table, "builder" in table
    if has_formula == has_builder:
        raise CardError(
            f'{source}: [model] needs exactly one of formula = "y ~ x + (1 | g)" or builder = "<name>" '
            f"(one of {', '.join(BUILDERS)}) with a [model.args] table."
        )
    family, link = table.get("family"), table.get("link")
    for key, val in (("family", family), ("link", link)):
        if val is not None and not isinstance(val, str):
            raise CardError(f"{source}: [model] {key} must be a string; received {val!r}.")
    if has_formula:
        if "args" in table:
            raise CardError(f"{source}: [model.args] belongs to a builder; a formula card has no args.")
        centered = table.get("centered", False)
        if not isinstance(centered, bool):
            raise CardError(f"{source}: [model] centered must be true or false; received {centered!r}.")
        return parse_formula(table["formula"], family=family or "gaussian", link=link, priors=priors, centered=centered)
    name = table["builder"]
    if not isinstance(name, str) or name not in BUILDERS:
        raise CardError(f"{source}: unknown builder {name!r}; allowed: {', '.join(BUILDERS)}.")
    if "centered" in table:
        raise CardError(f"{source}: for a builder, give centered in [model.args], not in [model].")
    builder = BUILDERS[name]
    kwargs = _builder_args(builder, name, table.get("args", {}), source)
    params = inspect.signature(builder).parameters
    for key, val in (("family", family), ("link", link)):
        if val is None:
            continue
        if key in kwargs:
            raise CardError(f"{source}: {key} is given both in [model] and in [model.args]; give it once.")
        if key not in params:
            raise CardError(f"{source}: builder {name!r} has no {key} (it is a Gaussian model); remove it.")
        kwargs[key] = val
    try:
        return builder(priors=priors, **kwargs)
    except TypeError as err:  # a required argument is missing
        raise CardError(f"{source}: builder {name!r}: {err}. Add it to [model.args].") from None


def _sampler_part(table: dict[str, Any], source: str) -> dict[str, Any]:
    fit_params = inspect.signature(fit).parameters
    allowed = tuple(k for k in _SAMPLER_TYPES if k in fit_params)
    _check_keys(table, allowed, f"{source}: [sampler]")
    out: dict[str, Any] = {}
    for key, val in table.items():
        types = _SAMPLER_TYPES[key]
        if (isinstance(val, bool) and bool not in types) or not isinstance(val, types):
            raise CardError(
                f"{source}: [sampler] {key} must be of type {' or '.join(t.__name__ for t in types)}; received {val!r}."
            )
        out[key] = val
    if "sampler" in out and out["sampler"] not in SAMPLERS:
        raise CardError(
            f"{source}: [sampler] sampler must be one of {', '.join(SAMPLERS)}; received {out['sampler']!r}."
        )
    if "method" in out and out["method"] not in _CARD_METHODS:
        raise CardError(
            f"{source}: [sampler] method must be one of {', '.join(_CARD_METHODS)}; received {out['method']!r}."
        )
    if "target_accept" in out:
        out["target_accept"] = float(out["target_accept"])
    return out


def parse_card(text: str, *, base: Path | None = None, name: str = "card", path: Path | None = None) -> Card:
    """Parse the TOML text of a model card.

    Parameters
    ----------
    text
        The card's TOML.
    base
        Folder that relative data paths are resolved against (the card's folder).
    name
        Default name when the card has no ``name`` key.
    path
        The card's file, for messages and :attr:`Card.path`.

    Raises
    ------
    CardError
        For TOML syntax errors, unknown keys or wrong types (naming the table and key).
    SpecError, FormulaError, PriorError
        For an invalid model, formula or prior.
    """
    source = str(path) if path is not None else f"model card {name!r}"
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise CardError(f"{source}: not valid TOML: {err}.") from None
    _check_keys(doc, _TOP_KEYS, source)
    card_name = doc.get("name", name)
    description = doc.get("description", "")
    if not isinstance(card_name, str) or not isinstance(description, str):
        raise CardError(f"{source}: name and description must be strings.")
    dataset, data_path, dropna = _data_part(_table(doc, "data", source, required=True), base, source)
    priors_table = _table(doc, "priors", source, required=False)
    priors = priors_from_dict(priors_table, f"{source}: [priors]")
    model_table = _table(doc, "model", source, required=True)
    crossed = model_table.pop("crossed", False)
    if not isinstance(crossed, bool):
        raise CardError(f"{source}: [model] crossed must be true or false; received {crossed!r}.")
    spec = _model_part(model_table, priors, source)
    sampler = _sampler_part(_table(doc, "sampler", source, required=False), source)
    return Card(
        name=card_name,
        description=description,
        spec=spec,
        dataset=dataset,
        data_path=data_path,
        dropna=dropna,
        crossed=crossed,
        sampler=sampler,
        path=path,
    )


def load_card(path: str | Path) -> Card:
    """Read a model card (a ``.toml`` file); see the module docstring for the format.

    Relative data paths are resolved against the card's folder.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No model card at {path}.")
    return parse_card(path.read_text(encoding="utf-8"), base=path.parent, name=path.stem, path=path)


def demo_card() -> Card:
    """The card fitted by ``hierbayes demo`` (:data:`DEMO_CARD`, the three-level achievement model)."""
    return parse_card(DEMO_CARD, name="achievement")


def check_output_folder(out: str | Path, *, overwrite: bool = False) -> Path:
    """Make sure ``out`` can receive the results; create it if needed.

    Raises
    ------
    FileExistsError
        If ``out`` exists and is not empty, unless ``overwrite`` (then the result files in it
        are replaced one by one, atomically; other files are left alone), or if it is a file.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"The output path {out} exists and is not a folder; choose another --out.")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(
            f"The output folder {out} already exists and is not empty; nothing was written. "
            "Pass --overwrite (overwrite=True) to replace its results, or choose another --out."
        )
    out.mkdir(parents=True, exist_ok=True)
    return out


def summary_table(fit: Fit) -> pd.DataFrame:
    """The summary as one long table (random and fixed parts), as written to ``summary.csv``."""
    s = summary(fit)
    random = s.random.assign(part="random")
    fixed = s.fixed.rename_axis("name").reset_index().assign(part="fixed", group="", quantity="coef")
    cols = [
        "part",
        "group",
        "name",
        "quantity",
        "mean",
        "sd",
        "lower",
        "upper",
        "r_hat",
        "ess_bulk",
        "ess_tail",
        "mcse_mean",
    ]
    table = pd.concat([random, fixed], ignore_index=True)
    return table.reindex(columns=cols)


def write_results(fit: Fit, out: str | Path) -> dict[str, Path]:
    """Write ``posterior.nc``, ``summary.txt``, ``summary.csv`` and ``report.html`` to ``out``.

    Each file is written atomically. The folder must exist (see :func:`check_output_folder`).
    The summaries and the report are made from the draws as the file holds them (random effects
    rounded to float32, :func:`hierbayes.inference.store.as_stored`), so that ``hierbayes report
    posterior.nc`` rebuilds the same bytes.

    Returns
    -------
    dict
        File name -> path written.
    """
    out = Path(out)
    paths = {name: out / name for name in OUTPUT_FILES}
    save(fit, paths["posterior.nc"])
    fit = dataclasses.replace(fit, idata=as_stored(fit.idata, fit.design, exact=regenerable_draws(fit)))
    atomic_write_text(paths["summary.txt"], str(summary(fit)) + "\n")
    atomic_write_text(paths["summary.csv"], summary_table(fit).to_csv(index=False, lineterminator="\n"))
    report(fit, paths["report.html"])
    return paths


def run_card(
    card: Card,
    out: str | Path | None = None,
    *,
    overwrite: bool = False,
    progressbar: bool = True,
    **overrides: Any,
) -> Fit:
    """Fit a card's model; with ``out``, write the results there.

    Parameters
    ----------
    card
        From :func:`load_card`.
    out
        Output folder; ``None`` writes nothing. An existing non-empty folder is an error unless
        ``overwrite`` (checked before sampling).
    overwrite
        Replace the result files in an existing folder.
    progressbar
        Show the sampler's progress bar.
    **overrides
        Sampler settings that replace the card's (``draws=``, ``chains=``, ...); ``None`` is ignored.

    Returns
    -------
    Fit
    """
    if out is not None:
        out = check_output_folder(out, overwrite=overwrite)
    kwargs = card.sampler_kwargs(**overrides)
    fit_params = inspect.signature(fit).parameters
    unknown = [k for k in kwargs if k not in fit_params]
    if unknown:
        raise SpecError(f"Unknown sampler setting {unknown[0]!r} for model card {card.name!r}.")
    result = fit(
        card.spec, card.load_data(), dropna=card.dropna, crossed=card.crossed, progressbar=progressbar, **kwargs
    )
    if not isinstance(result, Fit):
        raise SpecError(f"Model card {card.name!r}: method {kwargs.get('method')!r} gives no posterior draws.")
    result.settings["card"] = {"name": card.name, "description": card.description}
    if out is not None:
        write_results(result, out)
    return result
