"""ML and REML estimates against lme4 (1.1-31), and the BLUPs against the dense formula.

Reference numbers are copied from ../shared/data/reference_lme4.json (REML fits and their
``ml_refit`` blocks). Tolerance: 1e-3 relative for the fixed effects, their standard errors, the
variance components (and the sleepstudy correlation) and the criterion (lme4's REML criterion,
or the deviance for ML); lme4's own optimiser stops at about 1e-6 relative.
"""

from __future__ import annotations

import numpy as np
import pytest

import hierbayes as hb

ACH3 = "math ~ year + retained + female + black + hispanic + size + lowinc + (1 | school) + (1 | child)"
ACH_SCHOOL = "math ~ year + retained + female + black + hispanic + size + lowinc + (1 | school)"
SLEEP = "Reaction ~ Days + (Days | Subject)"

# (formula, data set, method) -> fixed: {name: (estimate, se)}, variances: {"group:term": variance,
# "group:corr": correlation, "Residual": sigma^2}, criterion: REMLcrit (reml) or deviance (ml)
LME4 = {
    (ACH3, "achievement", "reml"): {
        "fixed": {
            "Intercept": (0.239670937789351, 0.152329451328783),
            "year": (0.748322317210625, 0.0053958362121589),
            "retained": (0.148142465036502, 0.0353535830112889),
            "female": (9.0375863924088e-05, 0.0422274828450979),
            "black": (-0.518185082784997, 0.0806030033683509),
            "hispanic": (-0.289937393923238, 0.0891031978618516),
            "size": (-0.000102747930602129, 0.000148454876953343),
            "lowinc": (-0.00800157961613758, 0.00181823193591777),
        },
        "variances": {
            "child:Intercept": 0.663672483199594,
            "school:Intercept": 0.0874974143446881,
            "Residual": 0.344524266260238,
        },
        "criterion": 16706.4388044482,
    },
    (ACH3, "achievement", "ml"): {
        "fixed": {
            "Intercept": (0.240830637569369, 0.148232808328316),
            "year": (0.748344464591802, 0.00539466011138208),
            "retained": (0.14770514964605, 0.0353454291105062),
            "female": (-0.000163912538416011, 0.0421825435022252),
            "black": (-0.516053539954268, 0.0801782634588921),
            "hispanic": (-0.289148830512454, 0.0888617332286964),
            "size": (-0.000103788102995258, 0.000144243823927068),
            "lowinc": (-0.0080200603888635, 0.00177118763367637),
        },
        "variances": {
            "child:Intercept": 0.662424287161704,
            "school:Intercept": 0.0808387463097145,
            "Residual": 0.344407338138151,
        },
        "criterion": 16650.7055855809,
    },
    (SLEEP, "sleepstudy", "reml"): {
        "fixed": {"Intercept": (251.405104848485, 6.82459669495491), "Days": (10.467285959596, 1.54578964390598)},
        "variances": {
            "Subject:Intercept": 612.100158024769,
            "Subject:Days": 35.0717144509388,
            "Subject:corr": 0.0655512382381282,
            "Residual": 654.940008259961,
        },
        "criterion": 1743.62827195995,
    },
    (SLEEP, "sleepstudy", "ml"): {
        "fixed": {"Intercept": (251.405104848485, 6.63227508065112), "Days": (10.4672859595956, 1.50223748459171)},
        "variances": {
            "Subject:Intercept": 565.514963862437,
            "Subject:Days": 32.6822354906129,
            "Subject:corr": 0.0813195978647574,
            "Residual": 654.941000291438,
        },
        "criterion": 1751.93934446321,
    },
    (ACH_SCHOOL, "achievement", "reml"): {
        "fixed": {
            "Intercept": (0.244515780234733, 0.141236492028293),
            "year": (0.744540904081331, 0.00847280202874252),
            "retained": (-0.492159699938756, 0.0541354755608456),
            "female": (0.0204672518821896, 0.0235800150229775),
            "black": (-0.52427283172843, 0.0474849261100288),
            "hispanic": (-0.291464748058094, 0.0507013081641178),
            "size": (-0.000131085354054063, 0.000140758353187719),
            "lowinc": (-0.00741175398087554, 0.00166356083906246),
        },
        "variances": {"school:Intercept": 0.0983454357064124, "Residual": 0.970629837414928},
        "criterion": 20496.2930762962,
    },
    (ACH_SCHOOL, "achievement", "ml"): {
        "fixed": {
            "Intercept": (0.2448130526634, 0.137497381737683),
            "year": (0.744590568133619, 0.00846923186621051),
            "retained": (-0.492779872014852, 0.0541111937769473),
            "female": (0.020398220293185, 0.0235700300961786),
            "black": (-0.523392976750813, 0.0473714886072298),
            "hispanic": (-0.291238889622632, 0.0506435240981593),
            "size": (-0.000131744194788638, 0.000137024255470068),
            "lowinc": (-0.00741443505828028, 0.00162082289090133),
        },
        "variances": {"school:Intercept": 0.0925271843651697, "Residual": 0.969976137625984},
        "criterion": 20438.7533931488,
    },
}


@pytest.mark.parametrize(("formula", "dataset", "method"), list(LME4))
def test_matches_lme4(formula, dataset, method):
    ref = LME4[(formula, dataset, method)]
    eb = hb.empirical_bayes(formula, hb.datasets.load(dataset), method=method)
    assert eb.converged
    rel = 1e-3
    for name, (estimate, se) in ref["fixed"].items():
        assert eb.fixed.loc[name, "estimate"] == pytest.approx(estimate, rel=rel), name
        assert eb.fixed.loc[name, "se"] == pytest.approx(se, rel=rel), name
    for key, value in ref["variances"].items():
        if key == "Residual":
            got = eb.sigma**2
        else:
            group, term = key.split(":")
            got = eb.corr[group].iloc[0, 1] if term == "corr" else eb.sd[group][term] ** 2
        assert got == pytest.approx(value, rel=rel), key
    assert eb.criterion == pytest.approx(ref["criterion"], rel=rel)
    assert eb.loglik == pytest.approx(-ref["criterion"] / 2, rel=rel)


def test_blups_are_the_conditional_means():
    """BLUPs = (Z'Z/s^2 + Omega^-1)^-1 Z'(y - X beta)/s^2 at the estimates, built densely."""
    df = hb.datasets.load("sleepstudy")
    eb = hb.empirical_bayes("Reaction ~ Days + (Days | Subject)", df)
    g = eb.design.groups[0]
    n, q = eb.design.n_obs, 2
    Z = np.zeros((n, g.n_levels * q))
    for a in range(q):
        Z[np.arange(n), g.index * q + a] = g.Z[:, a]
    sd, corr = eb.sd["Subject"].to_numpy(), eb.corr["Subject"].to_numpy()
    omega = np.kron(np.eye(g.n_levels), corr * np.outer(sd, sd))
    r = eb.design.y - eb.design.X @ eb.fixed["estimate"].to_numpy()
    cov = np.linalg.inv(Z.T @ Z / eb.sigma**2 + np.linalg.inv(omega))
    expected = (cov @ Z.T @ r / eb.sigma**2).reshape(g.n_levels, q)
    np.testing.assert_allclose(eb.blups["Subject"].to_numpy(), expected, rtol=1e-8, atol=1e-8)
    assert list(eb.blups["Subject"].columns) == ["Intercept", "Days"]
    assert eb.variances.shape == (4, 5)


def test_nested_blups_shapes_and_fit_entry_point():
    df = hb.datasets.load("achievement")
    eb = hb.empirical_bayes(ACH3, df, method="reml")
    with pytest.raises(ValueError, match=r"hb\.empirical_bayes"):
        hb.fit(ACH3, df, method="reml")
    assert isinstance(eb, hb.EmpiricalBayes) and eb.method == "reml"
    assert eb.blups["child"].shape == (1721, 1) and eb.blups["school"].shape == (60, 1)
    # BLUPs are shrunk towards zero: their spread is below the estimated sd
    assert 0 < eb.blups["school"].to_numpy().std() < eb.sd["school"].iloc[0]
    assert "REML" in repr(eb)


def test_refuses_what_it_does_not_cover():
    df = hb.datasets.load("guatemalan")
    with pytest.raises(hb.SpecError, match="bernoulli"):
        hb.empirical_bayes(hb.parse_formula("immun ~ kid2p + (1 | cluster)", family="bernoulli"), df)
    with pytest.raises(hb.SpecError, match="allowed: 'reml', 'ml'"):
        hb.empirical_bayes("math ~ year + (1 | school)", hb.datasets.load("achievement"), method="mle")
