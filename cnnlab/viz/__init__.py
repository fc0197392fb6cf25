"""Figures. Matplotlib runs headless (Agg) everywhere in cnnlab."""

import matplotlib

matplotlib.use("Agg")
