"""Venues: the port every DEX adapter implements (:mod:`venues.port`), the registry that names them
(:mod:`venues.registry`), and the simulated venues (:mod:`venues.simulated`)."""
