"""The Argo and Dagster examples against a real Ferry cluster: the Argo Workflow is
valid YAML whose `ferry` steps run as written; the Dagster asset materializes."""

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "clients" / "python" / "tests"))

from cluster import Ferry, Postgres, ferry_binary, make_items, make_target  # noqa: E402

ROWS = 20_000


@pytest.fixture(scope="module")
def cluster():
    pg = Postgres()
    make_items(pg, "src", "items", ROWS)
    ferry = Ferry(pg)
    yield pg, ferry
    ferry.stop()
    pg.stop()


def substitute(text: str, values: dict) -> str:
    def one(m):
        key = m.group(1).strip()
        if key not in values:
            raise AssertionError(f"the test has no value for {{{{{key}}}}}")
        return values[key]

    return re.sub(r"\{\{([^}=][^}]*)\}\}", one, text)


def test_argo_workflow_steps_run_as_written(cluster):
    pg, ferry = cluster
    make_target(pg, "public.argo_items")
    wf = yaml.safe_load((HERE / "argo" / "ferry-copy-workflow.yaml").read_text())
    assert wf["apiVersion"] == "argoproj.io/v1alpha1" and wf["kind"] == "Workflow"
    templates = {t["name"]: t for t in wf["spec"]["templates"]}
    assert wf["spec"]["entrypoint"] in templates
    for group in templates["main"]["steps"]:
        for step in group:
            assert step["template"] in templates, step
    values = {f"workflow.parameters.{p['name']}": p["value"] for p in wf["spec"]["arguments"]["parameters"]}
    values.update({
        "workflow.parameters.source": "src", "workflow.parameters.target": "dst",
        "workflow.parameters.query": "SELECT * FROM items", "workflow.parameters.table": "public.argo_items",
        "workflow.name": "ferry-copy-test",
    })
    env = dict(os.environ, FERRY_COORDINATOR=ferry.url)

    def run(template, extra):
        c = templates[template]["container"]
        assert c["command"] == ["ferry"]
        args = [substitute(a, {**values, **extra}) for a in c["args"]]
        return subprocess.run([str(ferry_binary()), *args], env=env, capture_output=True, text=True)

    copy = run("ferry-copy", {})
    assert copy.returncode == 0, copy.stderr
    job_id = copy.stdout.strip().splitlines()[-1]
    again = run("ferry-copy", {})  # the step retried: same request id, same job
    assert again.stdout.strip().splitlines()[-1] == job_id
    status = run("ferry-status", {"inputs.parameters.job": job_id})
    assert status.returncode == 0, status.stderr
    job = json.loads(status.stdout)
    assert job["state"] == "JOB_STATE_SUCCEEDED"
    assert job["rows_written"] == str(ROWS), "jsonpath $.rows_written gives the row count"
    assert pg.psql("dst", "select count(*) from public.argo_items") == str(ROWS)


def test_dagster_asset_materializes(cluster, monkeypatch):
    import dagster  # scripts/test-clients.sh runs this in a virtualenv with dagster
    pg, ferry = cluster
    make_target(pg, "public.dagster_items")
    monkeypatch.setenv("FERRY_BIN", str(ferry_binary()))
    monkeypatch.setenv("FERRY_COORDINATOR", ferry.url)
    monkeypatch.setenv("FERRY_EXAMPLE_SOURCE", "src")
    monkeypatch.setenv("FERRY_EXAMPLE_TARGET", "dst")
    monkeypatch.setenv("FERRY_EXAMPLE_QUERY", "SELECT * FROM items")
    monkeypatch.setenv("FERRY_EXAMPLE_TABLE", "public.dagster_items")
    spec = importlib.util.spec_from_file_location("ferry_assets", HERE / "dagster" / "ferry_assets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = dagster.materialize([module.sales_2026])
    assert result.success
    [mat] = result.asset_materializations_for_node("sales_2026")
    assert mat.metadata["rows_written"].value == ROWS
    assert pg.psql("dst", "select count(*) from public.dagster_items") == str(ROWS)
