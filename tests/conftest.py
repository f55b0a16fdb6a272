"""What every test shares: Hypothesis without its per-example deadline. A property is about
what code decides, never how fast it decides it; on a shared machine (a load of 16 on two
cores here) an example can take a second, and a deadline would fail the property for that."""

from hypothesis import settings

settings.register_profile("tocsin", deadline=None)
settings.load_profile("tocsin")
