"""One node on the network: the Host interface services depend on (``transport``) with its two
implementations, the libp2p host (``host``, ``streams``) and the in-memory mesh of the
in-process tests (``inmemory``, ``pipes``); signed gossip topics (``topics``); membership
(presence gossip, peer table, dialing) with its hello handshake and members push-pull
(``handshake``, ``members``), failure detection (``detector``), admission budgets
(``admission``) and hello gate (``gate``); LAN discovery (``lan``, mDNS); NAT traversal
(``nat``: AutoNAT, relays, hole punching); meshnode's fixes to py-libp2p
(``libp2p_patches``); the knowledge service (memory writes and replication), the node home,
logging, readiness notification to systemd (``sdnotify``), and fault containment
(``faults``: what a failing stream handler or task leaves behind is logged and counted, and
stops nothing else).

May import: meshnode.config, meshnode.stats, meshnode.errors, and the top-level packages
``protocols``, ``memory`` and ``bootstrap``. Nothing above it (a2a, trust, ask, api, cli, daemon).
"""
