"""Inference: the PyMC model, sampling, diagnostics and the :class:`~hierbayes.Fit` result.

Modules, in the order data flows through them: :mod:`~hierbayes.inference.priors` (priors
resolved against the design), :mod:`~hierbayes.inference.build` (the full model),
:mod:`~hierbayes.inference.collapsed` (random effects integrated out; REML/ML),
:mod:`~hierbayes.inference.sampling` (NUTS backends), :mod:`~hierbayes.inference.diagnostics`,
:mod:`~hierbayes.inference.store` (the fit file), :mod:`~hierbayes.inference.result` (``Fit``),
:mod:`~hierbayes.inference.fit` (the ``hb.fit`` pipeline) and
:mod:`~hierbayes.inference.calibration` (simulation-based calibration).
"""
