"""Loops written with loomc's ``@loop`` decorator, and the entry points that run them in the lab."""
