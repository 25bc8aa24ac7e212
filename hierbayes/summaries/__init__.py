"""Summaries of a fit: pure functions returning DataFrames or xarray objects."""
