"""Venues: the port every DEX adapter implements (:class:`engine.ports.Venue`), the registry that names them
(:mod:`venues.registry`), and the simulated venues (:mod:`venues.simulated`)."""
