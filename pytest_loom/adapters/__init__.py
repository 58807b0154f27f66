"""Adapters that drive real, installed loop runtimes inside the lab.

One module per runtime (``loomc``, ``loom_runner``, ``tightloop``, ``loom_agent``), each
importing its runtime at module level: :func:`pytest_loom.runtimes.get_runtime` imports an
adapter only once it has checked that the runtime's distribution is installed, so a missing
runtime is a one-line "install pytest-loom[x]" error, never an ImportError traceback.
"""
