"""Figures. Matplotlib runs headless (Agg) in cnnlab, except inside a Jupyter kernel, whose inline backend shows the
figures the API returns in the notebook."""

import sys

import matplotlib

if "ipykernel" not in sys.modules:
    matplotlib.use("Agg")
