"""The collapsed (marginalised) Gaussian path: random effects integrated out of the likelihood.

:mod:`~hierbayes.inference.collapsed.likelihood` (the marginal likelihood and exact conditional
draws, numpy and PyTensor), :mod:`~hierbayes.inference.collapsed.build` (the PyMC model on it and
the random-effect draws after sampling) and :mod:`~hierbayes.inference.collapsed.reml` (REML/ML
point estimates with BLUPs on the same likelihood).
"""
