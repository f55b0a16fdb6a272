"""The dashboard's static files (``static/``), served at ``/`` by ``tocsin.streams.dashboard``."""
