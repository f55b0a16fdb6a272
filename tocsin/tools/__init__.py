"""Operator tooling run beside the workers, on the topics and ClickHouse: the dead-letter
topic (``dlq.py``), replay of a range of a topic (``replay.py``) and the rebuild of the
ClickHouse tables from the topics (``rebuild.py``). The ``tocsin`` command line drives them."""
