"""``tocsin bench``: every scenario against a baseline measured in the same run."""
