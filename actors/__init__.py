"""Ray actors: thin shells that hold an engine object and translate calls.

Every Ray API call of the engine lives in this package (and serve_app.py), so
the core in ``engine/`` is tested without Ray.
"""
