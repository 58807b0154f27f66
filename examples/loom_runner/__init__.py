"""Loops written for loom-runner (``loom_agent``), and their lab wiring in ``wiring.py``."""
