"""What the agents and the web views share, below both: the settings (``settings.py``), the
metrics (``metrics.py``), every topic (``topics.py``) and every table (``tables.py``, with the
status table's index, ``status_index.py``).

Imports schemas, decisions and infra; never agents or streams (tests/unit/test_layers.py).
"""
