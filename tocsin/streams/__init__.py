"""The Faust app, settings, topics, tables, CLI and web views."""
