"""A2A tasks: their lifecycle and store (``lifecycle``: every task of the node, its agents'
and the mesh asks made here, goes through it), the task service that runs this node's agents
for tasks arriving on ``/meshnode/a2a/1.0.0``, the agents it hosts that do not answer by
the built-in answering (``hosted``: agents in code, existing A2A servers), and the client
that sends a task to another node.

May import: meshnode.node, meshnode.agents, meshnode.config, meshnode.errors, ``protocols``
and ``memory``. The HTTP binding of A2A lives in meshnode.api (it calls the asker, which
calls this service).
"""
