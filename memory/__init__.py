"""The memory of a node: signed records in Milvus (Lite or server), embedders, replication.

Import what you need from the submodules (``memory.store``, ``memory.embedders``,
``memory.errors``): importing this package alone stays cheap and does not load pymilvus.
Two small modules serve the layers above as well: ``memory.uris`` (what a memory URI names)
and ``memory.files`` (atomic, fsynced file writes for every state file of a node).
"""
