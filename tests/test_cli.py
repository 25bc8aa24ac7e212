"""The ``hierbayes`` command, with PyMC's sampler mocked (prior draws instead of MCMC)."""

from __future__ import annotations

import os
import subprocess
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pymc as pm
import pytest
from pymc.testing import mock_sample

import hierbayes as hb
import hierbayes.cards
import hierbayes.report.page as report_module
from hierbayes.cards import OUTPUT_FILES, load_card
from hierbayes.cli import build_parser, main

MODELS = Path(__file__).resolve().parent.parent / "models"
CARDS = sorted(MODELS.glob("*.toml"))
TINY = ["--draws", "20", "--chains", "2", "--no-progress"]

pytestmark = [
    pytest.mark.filterwarnings("ignore::hierbayes.ConvergenceWarning"),  # prior draws do not converge
    # the collapsed model's marginal likelihood is a Potential, which prior draws (the mock) ignore
    pytest.mark.filterwarnings("ignore:The effect of Potentials:UserWarning"),
]


@pytest.fixture
def mocked_sampler(monkeypatch):
    """Replace pm.sample by pymc.testing.mock_sample (with divergence and tree-depth stats); record calls."""
    calls: list[dict] = []
    stats = {
        "diverging": lambda size: np.zeros(size, dtype=bool),
        "tree_depth": lambda size: np.full(size, 3, dtype=np.int64),
    }

    def fake(**kwargs):
        calls.append(kwargs)
        return partial(mock_sample, sample_stats=stats)(**kwargs)

    monkeypatch.setattr(pm, "sample", fake)
    return calls


# ----------------------------------------------------------------------------- help


def _help(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 0
    return capsys.readouterr().out


def test_help_documents_every_command_and_option(capsys):
    top = _help(["--help"], capsys)
    for word in ("fit", "report", "demo", "--version", "hierbayes fit models/achievement.toml"):
        assert word in top
    sampler_opts = ["--draws", "--tune", "--chains", "--seed", "--sampler", "--target-accept", "--method",
                    "--no-progress"]
    fit = _help(["fit", "--help"], capsys)
    for opt in ["card", "--out", "--overwrite", *sampler_opts]:
        assert opt in fit
    demo = _help(["demo", "--help"], capsys)
    for opt in ["--out", "--overwrite", "results/demo", *sampler_opts]:
        assert opt in demo
    rep = _help(["report", "--help"], capsys)
    assert "posterior" in rep and "--out" in rep
    # every option of every command has a help text
    parser = build_parser()
    subcommands = next(a for a in parser._actions if a.dest == "command").choices
    for p in [parser, *subcommands.values()]:
        for action in p._actions:
            assert action.help, (p.prog, action.dest)


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["fit"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["fit", "card.toml", "--sampler", "stan"])
    assert exc.value.code == 2


# ----------------------------------------------------------------------------- fit every card


@pytest.mark.parametrize("card", CARDS, ids=lambda p: p.stem)
def test_fit_runs_on_every_card(card, tmp_path, mocked_sampler, capsys):
    c = load_card(card)
    if c.dataset is not None and c.dataset not in hb.datasets.available():
        pytest.skip(f"bundled data set {c.dataset!r} is not in hierbayes/datasets yet")
    out = tmp_path / "out"
    assert main(["fit", str(card), "--out", str(out), "--seed", "5", *TINY]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUT_FILES)
    assert mocked_sampler[0]["draws"] == 20 and mocked_sampler[0]["chains"] == 2
    assert mocked_sampler[0]["random_seed"] == 5 and mocked_sampler[0]["progressbar"] is False
    printed = capsys.readouterr().out
    text = (out / "summary.txt").read_text()
    assert text.strip() in printed
    fit = hb.load(out / "posterior.nc")
    assert fit.spec == c.spec and fit.settings["card"]["name"] == c.name
    assert str(hb.summary(fit)) + "\n" == text
    table = pd.read_csv(out / "summary.csv")
    assert set(table["part"]) <= {"random", "fixed"} and (table["part"] == "fixed").sum() == len(fit.design.fixed_names)
    html = (out / "report.html").read_text()
    assert c.name in html and '<table id="summary-fixed">' in html


def test_report_rebuilds_identically_in_a_fresh_process(tmp_path, mocked_sampler):
    out = tmp_path / "out"
    assert main(["fit", str(MODELS / "eight_schools.toml"), "--out", str(out), *TINY]) == 0
    original = (out / "report.html").read_bytes()
    (out / "report.html").unlink()
    env = {**os.environ, "MPLBACKEND": "agg"}
    done = subprocess.run(  # a new interpreter: no state shared with the fit
        [sys.executable, "-m", "hierbayes.cli", "report", str(out / "posterior.nc")],
        capture_output=True, text=True, env=env, check=False, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert (out / "report.html").read_bytes() == original
    assert main(["report", str(out / "posterior.nc"), "--out", str(tmp_path / "copy.html")]) == 0
    assert (tmp_path / "copy.html").read_bytes() == original


# ----------------------------------------------------------------------------- overwrite


def test_existing_folder_needs_overwrite(tmp_path, mocked_sampler, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    card = str(MODELS / "eight_schools.toml")
    assert main(["fit", card, "--out", str(out), *TINY]) == 1
    err = capsys.readouterr().err
    assert "already exists and is not empty" in err and "--overwrite" in err
    assert mocked_sampler == []  # refused before sampling
    assert [p.name for p in out.iterdir()] == ["notes.txt"]

    assert main(["fit", card, "--out", str(out), "--overwrite", *TINY]) == 0
    first = (out / "posterior.nc").stat().st_mtime_ns
    assert main(["fit", card, "--out", str(out), *TINY]) == 1
    assert main(["fit", card, "--out", str(out), "--overwrite", "--seed", "9", *TINY]) == 0
    assert (out / "posterior.nc").stat().st_mtime_ns >= first
    assert hb.load(out / "posterior.nc").settings["random_seed"] == 9
    assert (out / "notes.txt").read_text() == "mine"  # other files are left alone
    assert sorted(p.name for p in out.iterdir()) == sorted([*OUTPUT_FILES, "notes.txt"])


def test_output_path_that_is_a_file(tmp_path, mocked_sampler, capsys):
    target = tmp_path / "file"
    target.write_text("x")
    assert main(["fit", str(MODELS / "eight_schools.toml"), "--out", str(target), "--overwrite", *TINY]) == 1
    assert "is not a folder" in capsys.readouterr().err


def test_crash_while_writing_the_report_leaves_no_report(tmp_path, mocked_sampler, monkeypatch):
    def crash(fit):
        raise RuntimeError("renderer died")

    monkeypatch.setattr(report_module, "render_report", crash)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="renderer died"):
        main(["fit", str(MODELS / "eight_schools.toml"), "--out", str(out), *TINY])
    names = sorted(p.name for p in out.iterdir())
    assert "report.html" not in names
    assert not [n for n in names if n.endswith(".tmp")]
    assert hb.load(out / "posterior.nc")  # the files written before the crash are complete


# ----------------------------------------------------------------------------- report, demo, errors


def test_report_errors(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing.nc")]) == 1
    assert "No saved fit" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "missing.nc"), "--out", str(tmp_path / "no" / "r.html")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_fit_errors_are_one_line_messages(tmp_path, capsys):
    assert main(["fit", str(tmp_path / "none.toml")]) == 1
    assert "No model card" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text('[data]\ndataset = "sleepstudy"\n[model]\nformula = "Reaction ~ Dayz + (1 | Subject)"\n')
    assert main(["fit", str(bad), "--out", str(tmp_path / "o"), *TINY]) == 1
    assert "Dayz" in capsys.readouterr().err


def test_demo(tmp_path, mocked_sampler, monkeypatch, capsys):
    # The demo's card equals models/achievement.toml (test_cards); fit the small eight-schools card here.
    monkeypatch.setattr(hierbayes.cards, "demo_card", lambda: load_card(MODELS / "eight_schools.toml"))
    monkeypatch.chdir(tmp_path)
    assert main(["demo", *TINY]) == 0
    out = tmp_path / "results" / "demo"
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUT_FILES)
    printed = capsys.readouterr().out
    assert "Fixed effects:" in printed and "report.html" in printed
    assert main(["demo", *TINY]) == 1
    assert main(["demo", "--overwrite", *TINY]) == 0
