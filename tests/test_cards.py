"""TOML model cards: every card in models/ builds; malformed cards fail with clear errors."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import hierbayes as hb
from hierbayes.cards import BUILDERS, DEMO_CARD, CardError, demo_card, load_card, parse_card
from hierbayes.exceptions import DataError, FormulaError, PriorError

MODELS = Path(__file__).resolve().parent.parent / "models"
CARDS = sorted(MODELS.glob("*.toml"))


def test_the_worked_analyses_have_cards():
    names = {p.stem for p in CARDS}
    assert {
        "eight_schools", "achievement", "achievement_school", "achievement_child", "guatemalan", "sleepstudy",
        "seedlings", "naming", "birds",
    } <= names


@pytest.mark.parametrize("path", CARDS, ids=lambda p: p.stem)
def test_every_card_loads_and_builds(path):
    card = load_card(path)
    assert card.name == path.stem
    assert card.description
    if card.dataset is not None and card.dataset not in hb.datasets.available():
        pytest.skip(f"bundled data set {card.dataset!r} is not in hierbayes/datasets yet")
    design = hb.make_design(card.spec, card.load_data(), dropna=card.dropna)
    model = hb.build_model(design)
    assert "y" in model.named_vars
    assert {f"sd_{g.name}" for g in design.groups} <= set(model.named_vars)


def test_card_contents():
    three = load_card(MODELS / "achievement.toml")
    assert [g.name for g in three.spec.groups] == ["school", "child"]
    assert dict(three.sampler) == {"draws": 1000, "tune": 1000, "chains": 4, "random_seed": 1}
    eight = load_card(MODELS / "eight_schools.toml")
    assert eight.spec == hb.group_means(y="y", sigma="sigma", group="school", priors=eight.spec.priors)
    assert eight.spec.priors.group_sd == hb.HalfCauchy(scale=5.0)
    school = load_card(MODELS / "achievement_school.toml")
    assert school.spec == hb.parse_formula(
        "math ~ year + retained + female + black + hispanic + size + lowinc + (1 | school)"
    )
    gu = load_card(MODELS / "guatemalan.toml")
    assert (gu.spec.family, gu.spec.link) == ("bernoulli", "logit")
    assert [g.name for g in gu.spec.groups] == ["cluster", "cluster:mom"]
    assert load_card(MODELS / "sleepstudy.toml").spec == hb.parse_formula("Reaction ~ Days + (Days | Subject)")
    seed = load_card(MODELS / "seedlings.toml")
    assert seed.spec == hb.parse_formula("weight ~ genotype + (1 | genotype:tray)")
    naming = load_card(MODELS / "naming.toml")
    assert naming.spec == hb.parse_formula("log_rt ~ frequency + (1 | subject) + (1 | word)")
    birds = load_card(MODELS / "birds.toml")
    assert birds.spec == hb.parse_formula(
        "count ~ forest + offset(log_hours) + (1 | site)", family="negative_binomial"
    )


def test_demo_card_is_the_achievement_card():
    demo, card = demo_card(), load_card(MODELS / "achievement.toml")
    assert (demo.spec, demo.dataset, dict(demo.sampler), demo.name, demo.description) == (
        card.spec, card.dataset, dict(card.sampler), card.name, card.description
    )
    assert "achievement" in DEMO_CARD


def _card(text: str) -> str:
    return textwrap.dedent(text)


GOOD = _card(
    """
    [data]
    dataset = "sleepstudy"
    [model]
    formula = "Reaction ~ Days + (Days | Subject)"
    """
)


def test_builder_card_with_priors_and_sampler():
    card = parse_card(_card(
        """
        name = "nested"
        [data]
        dataset = "achievement"
        [model]
        builder = "nested"
        [model.args]
        y = "math"
        groups = ["school", "child"]
        x = ["year"]
        centered = true
        [priors]
        fixed = { mean = 0.0, sd = 10.0 }
        group_sd.school = { dist = "halfnormal", scale = 1.0 }
        group_sd."school:child" = { dist = "exponential", scale = 0.5 }
        sigma = { dist = "halfstudentt", scale = 2.0, nu = 4 }
        [sampler]
        draws = 50
        target_accept = 0.9
        sampler = "pymc"
        """
    ))
    priors = hb.Priors(
        fixed=hb.Normal(mean=0.0, sd=10.0),
        group_sd={"school": hb.HalfNormal(scale=1.0), "school:child": hb.Exponential(scale=0.5)},
        sigma=hb.HalfStudentT(scale=2.0, nu=4.0),
    )
    assert card.spec == hb.nested(y="math", groups=["school", "child"], x=["year"], centered=True, priors=priors)
    assert card.sampler_kwargs(draws=10, chains=None) == {"draws": 10, "target_accept": 0.9, "sampler": "pymc"}


def test_glmm_builder_takes_family_from_model_table():
    card = parse_card(_card(
        """
        [data]
        dataset = "guatemalan"
        [model]
        builder = "glmm"
        family = "bernoulli"
        [model.args]
        y = "immun"
        groups = ["cluster", "mom"]
        nest = true
        x = ["kid2p"]
        """
    ))
    assert card.spec == hb.parse_formula("immun ~ kid2p + (1 | cluster/mom)", family="bernoulli")


def test_csv_path_is_relative_to_the_card(tmp_path):
    (tmp_path / "data").mkdir()
    hb.datasets.load("sleepstudy").to_csv(tmp_path / "data" / "sleep.csv", index=False)
    path = tmp_path / "sleep.toml"
    path.write_text(GOOD.replace('dataset = "sleepstudy"', 'path = "data/sleep.csv"'))
    card = load_card(path)
    assert card.data_path == tmp_path / "data" / "sleep.csv"
    assert card.load_data().shape == (180, 3)
    (tmp_path / "data" / "sleep.csv").unlink()
    with pytest.raises(DataError, match="does not exist"):
        card.load_data()


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        (lambda t: "colour = 'red'\n" + t, CardError, "unknown key 'colour'; allowed: name, description"),
        (lambda t: t.replace("[model]", "[model]\nbuilder = 'nested'"), CardError, "exactly one of formula"),
        (lambda t: t.replace("[data]", "[data]\npath = 'x.csv'"), CardError, "exactly one of dataset"),
        (lambda t: t.replace("[model]", "[model]\nformula_x = 1"), CardError, r"\[model\]: unknown key 'formula_x'"),
        (lambda t: t + "[sampler]\ndraw = 10\n", CardError, r"\[sampler\]: unknown key 'draw'"),
        (lambda t: t + "[sampler]\ndraws = '10'\n", CardError, "draws must be of type int"),
        (lambda t: t + "[sampler]\nchains = true\n", CardError, "chains must be of type int"),
        (lambda t: t + "[sampler]\nsampler = 'stan'\n", CardError, "sampler must be one of auto"),
        (lambda t: t + "[sampler]\nmethod = 'reml'\n", CardError, "method must be one of auto"),
        (lambda t: t + "[priors]\nsigma = { dist = 'weibull', scale = 1 }\n", PriorError, "unknown prior distribution"),
        (lambda t: t + "[priors]\nfixed = { mean = 0, scale = 1 }\n", PriorError, "unknown key 'scale'"),
        (lambda t: t.replace("[data]", "[data]\ndropna = 'yes'"), CardError, "dropna must be true or false"),
        (lambda t: t + "[model.args]\ny = 'Reaction'\n", CardError, "a formula card has no args"),
        (lambda t: "model = 3\n" + t, CardError, "not valid TOML"),
        (lambda t: "data = 3\n", CardError, "data must be a table"),
        (lambda t: t.replace("[data]\n", ""), CardError, "unknown key 'dataset'; allowed: name, description, data"),
        (lambda t: "[model]\nformula = 'y ~ x'\n", CardError, r"no \[data\] table"),
    ],
)
def test_malformed_cards_are_rejected(change, error, match):
    with pytest.raises(error, match=match):
        parse_card(change(GOOD))


def test_builders_are_looked_up_by_name_only():
    assert set(BUILDERS) == {"group_means", "random_intercept", "random_slopes", "nested", "glmm"}
    for name in ("__import__", "os.system", "eval", "fit", "ModelSpec"):
        text = GOOD.replace('formula = "Reaction ~ Days + (Days | Subject)"', f'builder = "{name}"')
        with pytest.raises(CardError, match=f"unknown builder '{name}'; allowed: group_means"):
            parse_card(text)


def test_builder_argument_errors():
    base = GOOD.replace('formula = "Reaction ~ Days + (Days | Subject)"', 'builder = "group_means"')
    with pytest.raises(CardError, match=r"unknown key 'groups'; allowed: y, sigma, group, centered"):
        parse_card(base + "[model.args]\ny = 'Reaction'\ngroups = ['Subject']\n")
    with pytest.raises(CardError, match="must be a column name, a list of names or true/false"):
        parse_card(base + "[model.args]\ny = 1\n")
    with pytest.raises(CardError, match="missing 2 required keyword-only arguments"):
        parse_card(base + "[model.args]\ny = 'Reaction'\n")
    with pytest.raises(CardError, match="has no family"):
        parse_card(base.replace("[model]", "[model]\nfamily = 'poisson'") + "[model.args]\ny = 'y'\n")


def test_formulas_are_never_evaluated():
    text = GOOD.replace("Reaction ~ Days", "Reaction ~ __import__('os').system('echo hacked')")
    with pytest.raises(FormulaError):
        parse_card(text)


def test_unknown_dataset_fails_when_loading():
    card = parse_card(GOOD.replace('"sleepstudy"', '"no_such_data"'))
    with pytest.raises(DataError, match="no bundled data set 'no_such_data'; bundled are"):
        card.load_data()


def test_unknown_key_suggests_the_closest():
    card = load_card(MODELS / "sleepstudy.toml")
    text = (MODELS / "sleepstudy.toml").read_text().replace("draws = 1000", "draw = 1000")
    with pytest.raises(CardError, match=r"unknown key 'draw'; allowed: .* Did you mean 'draws'\?"):
        parse_card(text, name=card.name)


def test_crossed_flag():
    text = (MODELS / "naming.toml").read_text()
    assert not parse_card(text).crossed
    card = parse_card(text.replace("[model]\n", "[model]\ncrossed = true\n"))
    assert card.crossed and card.spec == load_card(MODELS / "naming.toml").spec
    with pytest.raises(CardError, match="crossed must be true or false"):
        parse_card(text.replace("[model]\n", "[model]\ncrossed = 1\n"))
