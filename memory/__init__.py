"""The memory of a node: signed records in Milvus (Lite or server), embedders, replication.

Import what you need from the submodules (``memory.store``, ``memory.embedders``,
``memory.errors``): importing this package alone stays cheap and loads no Milvus library;
a store loads Milvus Lite's engine or pymilvus (``memory.engine``) only when it opens.
``memory.marks`` keeps per-author marks (how far each author's sequence is held without a
gap) and ``memory.budget`` what one author or peer may make the node store or serve. Two
small modules serve the layers above as well: ``memory.uris`` (what a memory URI names) and
``memory.files`` (atomic, fsynced file writes for every state file of a node).
"""
