"""Fixtures: one PostgreSQL and one Ferry cluster (coordinator + worker) per session."""

import itertools
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cluster import Ferry, Postgres, make_items, make_target  # noqa: E402

#: Rows in src.public.items.
ITEMS = 60_000
#: Job options that split ITEMS into several chunks.
SPLIT = {"chunk_size": 10_000, "min_rows_for_parallel": 1_000}

_tables = itertools.count(1)


@pytest.fixture(scope="session")
def pg():
    cluster = Postgres()
    try:
        make_items(cluster, "src", "items", ITEMS)
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def ferry(pg):
    cluster = Ferry(pg)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def target(pg):
    """A fresh, empty target table in dst; returns its name."""
    name = f"public.t{next(_tables)}"
    make_target(pg, name)
    return name
