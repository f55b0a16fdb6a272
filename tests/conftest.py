"""What every test shares: Hypothesis without its per-example deadline. A property is about
what code decides, never how fast it decides it; on a shared machine (a load of 16 on two
cores here) an example can take a second, and a deadline would fail the property for that."""

import pytest
from hypothesis import settings

settings.register_profile("tocsin", deadline=None)
settings.load_profile("tocsin")

#: the longest files (minutes each: outages, restarts, browsers), handed out first. `make test`
#: runs xdist with ``--dist loadfile --no-loadscope-reorder``: files go to its workers in
#: collection order, so a long file that came last would leave one worker running it alone
#: (without the option xdist orders files by their count of tests, which put these last).
#: Every other file keeps its place (integration before unit: the many short unit files fill
#: the end).
SLOWEST_FIRST = (  # by their total time in a run on 2026-12-08, longest first
    "test_recording.py", "test_outages.py", "test_delivery.py", "test_ingest.py", "test_scale_out.py",
    "test_openapi.py", "test_pipeline.py", "test_retention.py", "test_prometheus.py", "test_broker_pause.py",
    "test_dev.py", "test_flapping.py", "test_outbox_broker.py", "test_silences.py", "test_maintenance.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        integration = item.path.parent.name == "integration"
        if integration and item.path.name in SLOWEST_FIRST:
            return SLOWEST_FIRST.index(item.path.name)
        return len(SLOWEST_FIRST) + (0 if integration else 1)

    items.sort(key=rank)  # stable: within a file, and among the others, the order is kept
