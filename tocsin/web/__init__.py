"""The worker's HTTP surface, on Faust's web server: the views and who may call them.

``views.register(rt)`` registers every view: ``/health``, ``/metrics``, the on-call API
(``api.py``), the dashboard (``dashboard.py``, its files in ``static/``), read-only SQL
(``sql.py``), the ways in speaking Alertmanager's and PagerDuty's protocols (``ingest.py``),
silences as Alertmanager's API v2 (``silences.py``) and the OpenAPI document (``openapi.py``,
``openapi.json``). ``auth.py`` decides, once for every request, who may call what;
``answers.py`` is how a view answers in JSON.
"""
