"""Example tightloop loops, wired into the lab by ``pytest_loom.adapters.tightloop.lab_loop``."""
