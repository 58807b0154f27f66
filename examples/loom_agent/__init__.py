"""Example loom-agent agents, driven by the lab through pytest_loom.adapters.loom_agent."""
