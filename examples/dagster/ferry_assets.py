"""A Dagster asset materialized by a Ferry copy, driven through the `ferry` CLI.

    FERRY_COORDINATOR=http://ferry-coordinator:50051 dagster dev -f examples/dagster/ferry_assets.py

The asset's metadata carries the job id and the row counts, read from
`ferry status JOB --output json` (the protobuf JSON mapping: snake_case fields,
64-bit counts as strings).
"""

import json
import os
import subprocess

from dagster import AssetExecutionContext, Definitions, Failure, MaterializeResult, asset

FERRY = os.environ.get("FERRY_BIN", "ferry")
SOURCE = os.environ.get("FERRY_EXAMPLE_SOURCE", "warehouse")
TARGET = os.environ.get("FERRY_EXAMPLE_TARGET", "lake")
QUERY = os.environ.get("FERRY_EXAMPLE_QUERY", "SELECT * FROM sales WHERE year = 2026")
TABLE = os.environ.get("FERRY_EXAMPLE_TABLE", "public.sales_2026")


def ferry(*args: str) -> subprocess.CompletedProcess:
    """Runs the ferry CLI (FERRY_COORDINATOR names the coordinator)."""
    return subprocess.run([FERRY, *args], capture_output=True, text=True)


@asset(description="Rows of the warehouse's 2026 sales, copied into the lake by Ferry")
def sales_2026(context: AssetExecutionContext) -> MaterializeResult:
    # One request id per Dagster run: a retried step re-attaches to its job.
    request_id = f"dagster:{context.asset_key.to_user_string()}:{context.run.run_id}"
    submit = ferry("submit", f"--source={SOURCE}", f"--query={QUERY}", f"--target={TARGET}",
                   f"--table={TABLE}", f"--request-id={request_id}", "--watch")
    context.log.info(submit.stderr)
    if submit.returncode not in (0, 1):  # 2 invalid input, 3 no coordinator
        raise Failure(f"ferry submit failed ({submit.returncode}): {submit.stderr.strip()}")
    job_id = submit.stdout.strip().splitlines()[-1]
    status = ferry("status", job_id, "--output=json")
    if status.returncode != 0:
        raise Failure(f"ferry status {job_id} failed: {status.stderr.strip()}")
    job = json.loads(status.stdout)
    if job["state"] != "JOB_STATE_SUCCEEDED":
        raise Failure(f"ferry job {job_id} {job['state']}: {job['error']}")
    return MaterializeResult(metadata={
        "job_id": job_id,
        "rows_written": int(job["rows_written"]),
        "rows_rejected": int(job["rows_rejected"]),
        "chunks": job["chunks_total"],
    })


defs = Definitions(assets=[sales_2026])
