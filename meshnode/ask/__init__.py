"""Asking the mesh: the asker that routes a question to the best agents and brings back one
answer, who can answer (the agents known here and the candidates an ask scores,
``candidates``), asking one agent (``calls``), the routing policy (pure scoring functions),
skill relevance by embeddings, the history of recent asks, the asker's checks of answers
(``quality``), a wave's outcomes and the answer taken (``outcomes``), the verdicts on answers
taken and what is learnt from them (``verdicts``, ``learning``), and agents consulting each
other through the asker (``delegation``).

May import: meshnode.a2a, meshnode.trust, meshnode.node, meshnode.config, meshnode.agents,
meshnode.errors, ``protocols`` and ``memory``.
"""
