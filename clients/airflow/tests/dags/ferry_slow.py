"""Test DAG: a copy into a table whose inserts are slowed, so the task can be killed mid-run."""

from datetime import datetime

from airflow.sdk import DAG

from ferry_airflow.operators import FerryTransferOperator

with DAG(dag_id="ferry_slow", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
    FerryTransferOperator(
        task_id="copy_slowly",
        source="src",
        query="SELECT * FROM items",
        target="dst",
        table="public.slow_items",
        job_options={"chunk_size": 10_000, "min_rows_for_parallel": 1_000},
    )
