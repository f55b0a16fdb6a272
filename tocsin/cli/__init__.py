"""The ``tocsin`` command line: ``main.py`` (the worker, ``dev``, ``broker``, ``send``,
``schema``) and one module per group of commands registered on it: ``replay.py``,
``dlq.py``, ``store.py`` (``sql``, ``stats``, ``rebuild``), ``bench.py``, ``route.py``
(``route --dry-run``, ``check-config``)."""
