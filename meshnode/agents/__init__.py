"""The agents a node hosts: their specs (from the config), how they answer (retrieval,
then an LLM or extractive quotes), the LLM client, and passage handling.

May import: meshnode.errors, and the top-level packages ``protocols`` and ``memory``.
It knows nothing of the network: the a2a service carries its answers.
"""
