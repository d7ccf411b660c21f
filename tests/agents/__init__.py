"""Tests of the agents a node hosts: LLM client, answers, agent config."""
