"""Starting and stopping the engine: Ray, Serve's HAProxy ingress, embedded stores, process settings.
Nothing here is imported by the core (``engine/``) or by the edge (``api/``)."""
