"""Trust: this node's evidence about its peers (``evidence``: outcomes, weights, bounded
tables), the graph of evidence, attestations and EigenTrust-style global trust (pure data),
and the service that gossips signed attestations and persists the graph.

May import: meshnode.node, meshnode.config, meshnode.errors, ``protocols`` and ``memory``
(its atomic file write).
"""
