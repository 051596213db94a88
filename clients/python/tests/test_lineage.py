"""OpenLineage events from the coordinator, received by a local HTTP collector and
validated with openlineage-python's typed model of the spec; an unreachable
collector only produces warnings."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import attr
import pytest
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import (
    datasource_dataset,
    error_message_run,
    output_statistics_output_dataset,
    sql_job,
)
from openlineage.client.serde import Serde

from cluster import Ferry, free_port, make_target
from conftest import ITEMS
from ferry_client import Client, JobFailed

FACETS = {
    "sql": sql_job.SQLJobFacet,
    "dataSource": datasource_dataset.DatasourceDatasetFacet,
    "outputStatistics": output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet,
    "errorMessage": error_message_run.ErrorMessageRunFacet,
}


def typed_facets(raw):
    """Facets as openlineage-python classes (their validators run); an unknown facet fails."""
    out = {}
    for name, body in (raw or {}).items():
        cls = FACETS[name]
        fields = {a.name for a in attr.fields(cls)}
        kwargs = {k: v for k, v in body.items() if k.lstrip("_") in {f.lstrip("_") for f in fields}}
        assert set(body) == set(kwargs), f"facet {name} has fields the spec does not: {set(body) - set(kwargs)}"
        producer, schema = kwargs.pop("_producer"), kwargs.pop("_schemaURL")
        facet = cls(**kwargs, producer=producer)
        assert facet._schemaURL == schema, (name, schema)
        out[name] = facet
    return out


def validate(event: dict) -> RunEvent:
    """Rebuilds the event with openlineage-python (validators: uuid, date-time, enums, facet
    shapes) and checks that it serializes back to exactly what was received."""
    typed = RunEvent(
        eventType=RunState(event["eventType"]),
        eventTime=event["eventTime"],
        producer=event["producer"],
        run=Run(runId=event["run"]["runId"], facets=typed_facets(event["run"].get("facets"))),
        job=Job(namespace=event["job"]["namespace"], name=event["job"]["name"],
                facets=typed_facets(event["job"].get("facets"))),
        inputs=[InputDataset(namespace=d["namespace"], name=d["name"], facets=typed_facets(d.get("facets")))
                for d in event["inputs"]],
        outputs=[OutputDataset(namespace=d["namespace"], name=d["name"], facets=typed_facets(d.get("facets")),
                               outputFacets=typed_facets(d.get("outputFacets")))
                 for d in event["outputs"]],
    )
    assert typed.schemaURL == event["schemaURL"]
    back = json.loads(Serde.to_json(typed))
    assert prune(back) == prune(event), "event does not round-trip through openlineage-python"
    return typed


def prune(value):
    """The value without empty objects and lists (the spec treats them as absent)."""
    if isinstance(value, dict):
        value = {k: prune(v) for k, v in value.items()}
        return {k: v for k, v in value.items() if v not in ({}, [], None)}
    if isinstance(value, list):
        return [prune(v) for v in value]
    return value


class Collector:
    """A local OpenLineage HTTP endpoint that records what it receives."""

    def __init__(self):
        self.events = []
        self.paths = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.paths.append(self.path)
                outer.events.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def for_run(self, run_id_events, n, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = run_id_events()
            if len(found) >= n:
                return found
            time.sleep(0.2)
        return run_id_events()

    def close(self):
        self.server.shutdown()


@pytest.fixture(scope="module")
def collector():
    c = Collector()
    yield c
    c.close()


@pytest.fixture(scope="module")
def lineage_ferry(pg, collector):
    cluster = Ferry(pg, env={"OPENLINEAGE_URL": collector.url, "OPENLINEAGE_NAMESPACE": "ferry-tests"})
    yield cluster
    cluster.stop()


def events_of(collector, job_name):
    return [e for e in collector.events if e["job"]["name"] == job_name]


def test_a_job_reports_start_and_complete_with_inputs_and_row_count(pg, collector, lineage_ferry, target):
    pg.psql("src", "create table if not exists customers (id int primary key, name text)")
    pg.psql("src", "insert into customers select g, 'c' || g from generate_series(0, 10006) g on conflict do nothing")
    c = Client(lineage_ferry.url)
    # an inner join: PostgreSQL scans both (it drops a LEFT JOIN whose columns are unused,
    # and then lineage rightly names items alone)
    query = "select i.* from items i join customers c on c.id = i.customer_id"
    job = c.submit(source="src", query=query, target="dst", table=target, key_column="id")
    assert c.wait(job.job_id, timeout=120).rows_written == ITEMS
    name = f"copy.dst.{target}"
    got = collector.for_run(lambda: events_of(collector, name), 2)
    assert [e["eventType"] for e in got] == ["START", "COMPLETE"], got
    assert set(collector.paths) == {"/api/v1/lineage"}
    for e in got:
        validate(e)
        assert e["job"]["namespace"] == "ferry-tests"
        assert e["job"]["facets"]["sql"]["query"] == query
        assert sorted(d["name"] for d in e["inputs"]) == ["src.public.customers", "src.public.items"]
        assert {d["namespace"] for d in e["inputs"]} == {f"postgres://127.0.0.1:{pg.port}"}
        assert e["outputs"][0]["name"] == f"dst.{target}"
        assert e["run"]["runId"] == got[0]["run"]["runId"]
    stats = got[1]["outputs"][0]["outputFacets"]["outputStatistics"]
    assert stats["rowCount"] == ITEMS


def test_failed_and_cancelled_jobs_report_fail_and_abort(pg, collector, lineage_ferry, target):
    c = Client(lineage_ferry.url)
    bad = c.submit(source="src", query="select * from items where id / 0 = 1", target="dst", table=target)
    with pytest.raises(JobFailed):
        c.wait(bad.job_id, timeout=120)
    other = f"{target}_b"
    make_target(pg, other)
    gone = c.submit(source="src", query="select * from items", target="dst", table=other)
    c.cancel(gone.job_id)
    with pytest.raises(JobFailed):
        c.wait(gone.job_id, timeout=120)
    failed = collector.for_run(lambda: events_of(collector, f"copy.dst.{target}"), 2)
    assert [e["eventType"] for e in failed] == ["START", "FAIL"]
    assert "division by zero" in failed[1]["run"]["facets"]["errorMessage"]["message"]
    aborted = collector.for_run(lambda: events_of(collector, f"copy.dst.{other}"), 2)
    assert [e["eventType"] for e in aborted] == ["START", "ABORT"]
    for e in failed + aborted:
        validate(e)


def test_an_unreachable_collector_only_warns(pg, target):
    dead = f"http://127.0.0.1:{free_port()}"
    cluster = Ferry(pg, env={"OPENLINEAGE_URL": dead})
    try:
        c = Client(cluster.url)
        job = c.submit(source="src", query="select * from items", target="dst", table=target)
        assert c.wait(job.job_id, timeout=120).state == "SUCCEEDED"
        deadline = time.monotonic() + 30
        while "openlineage event not delivered" not in cluster.log() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "openlineage event not delivered" in cluster.log()
        assert pg.psql("dst", f"select count(*) from {target}") == str(ITEMS)
    finally:
        cluster.stop()
