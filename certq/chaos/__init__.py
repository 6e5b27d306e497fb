"""Chaos scenarios and the real Redis topologies they run on."""
