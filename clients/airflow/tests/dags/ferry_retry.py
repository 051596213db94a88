"""Test DAG: the copy task fails once after its job ended; its retry (try 2, same DAG
run) must re-attach to the same job instead of copying again."""

from datetime import datetime, timedelta

from airflow.exceptions import AirflowException
from airflow.sdk import DAG

from ferry_airflow.operators import FerryTransferOperator


class FailsOnceAfterTheCopy(FerryTransferOperator):
    """Raises on try 1 once the job has ended, as a worker lost after the copy would."""

    def execute_complete(self, context, event):
        result = super().execute_complete(context, event)
        if context["ti"].try_number == 1:
            raise AirflowException(f"injected failure after ferry job {result['job_id']} ended")
        return result


with DAG(dag_id="ferry_retry", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
    FailsOnceAfterTheCopy(
        task_id="copy_with_retry",
        source="src",
        query="SELECT * FROM items",
        target="dst",
        table="public.retry_items",
        retries=1,
        retry_delay=timedelta(seconds=0),
    )
