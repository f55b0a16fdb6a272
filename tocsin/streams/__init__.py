"""The Faust app: ``app.build(settings)`` makes a worker's ``Runtime`` and registers its
agents and web views."""
