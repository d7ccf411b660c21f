"""One node on the network: the libp2p host and its streams, membership (hello handshake,
presence gossip, peer table, dialing, pinging), the knowledge service (memory writes and
replication), the node home, logging and readiness notification to systemd.

May import: meshnode.config, meshnode.errors, and the top-level packages ``protocols``,
``memory`` and ``bootstrap``. Nothing above it (a2a, trust, ask, api, cli, daemon).
"""
