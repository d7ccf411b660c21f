"""The agents a node hosts: their specs (from the config) and the skill texts routing
compares questions with (of any agent card, a peer's too), how they answer (retrieval,
then an LLM or extractive quotes), the LLM client, and passage handling; the public API of
agents in code (``code``) and the HTTP client of existing A2A servers (``remote``).

May import: meshnode.errors, meshnode.settings, and the top-level packages ``protocols``
and ``memory``.
It knows nothing of the network: the a2a service carries its answers.
"""
