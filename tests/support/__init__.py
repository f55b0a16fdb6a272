"""What several test modules share and the package does not ship: sample topic messages
(``samples.py``) and a store whose inserts fail on purpose (``faulty_store.py``)."""
