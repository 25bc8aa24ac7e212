"""The names of the model's variables and dims, declared once for every stage.

=====================  ==========================================================
name                   what
=====================  ==========================================================
``beta``               fixed effects on the data's scale (dim ``coef``)
``beta_std``           fixed effects on the sampler's standardised scale
``sd_<g>``             standard deviations of group ``g``'s varying terms
``corr_<g>``           their correlation matrix (full-covariance terms)
``corr_chol_<g>``      its Cholesky factor, as sampled
``u_<g>``              random effects (dims ``<g>``, ``<g>_coef``)
``z_<g>``              their standardised (non-centred) version, as sampled
``sigma``              residual sd (Gaussian); other family parameters by their names
``y``                  the response (dim ``obs``)
=====================  ==========================================================
"""

from __future__ import annotations

__all__ = ["BETA", "BETA_STD", "COEF", "OBS", "RESPONSE", "SIGMA", "corr", "corr_chol", "sd", "u", "z"]

BETA = "beta"
BETA_STD = "beta_std"
SIGMA = "sigma"
RESPONSE = "y"
COEF = "coef"
OBS = "obs"


def sd(group: str) -> str:
    """``sd_<group>``."""
    return f"sd_{group}"


def corr(group: str) -> str:
    """``corr_<group>``."""
    return f"corr_{group}"


def corr_chol(group: str) -> str:
    """``corr_chol_<group>``."""
    return f"corr_chol_{group}"


def u(group: str) -> str:
    """``u_<group>``."""
    return f"u_{group}"


def z(group: str) -> str:
    """``z_<group>``."""
    return f"z_{group}"
