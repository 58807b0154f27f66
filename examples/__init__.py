"""Example loops driven by the shipped scenarios (see scenarios/)."""
