"""The HTTP and WebSocket edge: FastAPI routers per resource over the engine's core. It only
translates: requests to domain calls, domain outcomes and errors to HTTP (:mod:`api.errors`)."""
