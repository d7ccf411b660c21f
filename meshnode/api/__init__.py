"""The local HTTP API: the ASGI app (token auth, JSON and streaming responses), the routes
of the CLI, the A2A JSON-RPC binding, the bridge that serves the whole mesh as one A2A
agent, the live dashboard and the Prometheus metrics.

May import everything below it: meshnode.ask, meshnode.trust, meshnode.a2a, meshnode.node,
meshnode.agents, meshnode.config, meshnode.errors, and the top-level packages.
"""
