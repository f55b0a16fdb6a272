"""Pure decisions: throttle, routing, delivery, retry scheduling and failure classes.

No Faust, HTTP, SMTP or ClickHouse here; the clock and randomness are parameters.
"""
