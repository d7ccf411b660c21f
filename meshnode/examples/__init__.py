"""Example agents in code, shipped with meshnode so that a config can name them after
``pip install .`` (``handler = "meshnode.examples.calculator:agent"``). They use only the
public API (``import meshnode``) and are a starting point for your own.
"""
