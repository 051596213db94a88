"""Python client for Ferry's JobService.

    from ferry_client import Client
    c = Client("http://127.0.0.1:50051")
    job = c.submit(source="warehouse", query="SELECT * FROM sales", target="lake",
                   table="public.sales", request_id="sales-2026")
    done = c.wait(job.job_id)          # raises JobFailed when FAILED/CANCELLED
    print(done.state, done.rows_written)

``ferry_client.aio.Client`` is the same API for asyncio.
"""

from .client import Client
from .errors import Error, FerryError, JobFailed
from .job import TERMINAL_STATES, ChunkCheck, Job, Reject, Rejects

__all__ = [
    "Client",
    "ChunkCheck",
    "Error",
    "FerryError",
    "Job",
    "JobFailed",
    "Reject",
    "Rejects",
    "TERMINAL_STATES",
]
__version__ = "0.1.0"
