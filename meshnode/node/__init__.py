"""One node on the network: the libp2p host and its streams, membership (hello handshake,
presence gossip, peer table, dialing, pinging) and its hello gate, LAN discovery (mDNS), NAT
traversal (AutoNAT, relays, hole punching), meshnode's fixes to py-libp2p, the knowledge
service (memory writes and replication), the node home and logging.

May import: meshnode.config, meshnode.errors, and the top-level packages ``protocols``,
``memory`` and ``bootstrap``. Nothing above it (a2a, trust, ask, api, cli, daemon).
"""
