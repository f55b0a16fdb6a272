"""Faust agents: one module per agent; channels/ holds one module per channel."""
