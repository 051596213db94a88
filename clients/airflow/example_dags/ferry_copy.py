"""Example DAG: copy a query's rows with Ferry, then use the row counts.

Needs an Airflow connection ``ferry_default`` naming the coordinator, e.g.
``AIRFLOW_CONN_FERRY_DEFAULT='ferry://ferry-coordinator:50051'``, and
connections ``src`` and ``dst`` known to the Ferry cluster
(``FERRY_CONN_SRC``/``FERRY_CONN_DST`` on coordinator and workers).
"""

from datetime import datetime

from airflow.sdk import DAG, task

from ferry_airflow.operators import FerryTransferOperator

with DAG(
    dag_id="ferry_copy",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["ferry"],
) as dag:
    copy = FerryTransferOperator(
        task_id="copy_items",
        source="src",
        query="SELECT * FROM items",
        target="dst",
        table="public.items",
        job_options={"chunk_size": 10_000, "min_rows_for_parallel": 1_000},
        retries=2,
    )

    @task
    def report(result: dict) -> int:
        """Reads the job's row counts from XCom."""
        print(f"ferry job {result['job_id']}: {result['rows_written']} rows, {result['rows_rejected']} rejected")
        return result["rows_written"]

    report(copy.output)
