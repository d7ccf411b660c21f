"""The memory of a node: signed records in Milvus (Lite or server), embedders, replication.

Import what you need from the submodules (``memory.store``, ``memory.embedders``,
``memory.errors``): importing this package alone stays cheap and does not load pymilvus.
"""
