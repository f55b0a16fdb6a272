"""Pure decisions: throttle, routing, retry scheduling and failure classes.

No Faust, httpx, SMTP or ClickHouse here; the clock and randomness are parameters.
"""
