"""Plots and tables people look at: learning curves, overlays, metric tables."""
