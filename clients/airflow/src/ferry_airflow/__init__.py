"""Airflow provider for Ferry: ``FerryTransferOperator`` (deferrable), ``FerryJobTrigger``, ``FerryHook``."""

__version__ = "0.1.0"


def get_provider_info():
    """Provider metadata read by Airflow (connection type ``ferry``)."""
    return {
        "package-name": "ferry-airflow",
        "name": "Ferry",
        "description": "Parallel, exactly-once query-to-table copies with Ferry",
        "versions": [__version__],
        "connection-types": [
            {"connection-type": "ferry", "hook-class-name": "ferry_airflow.hooks.FerryHook"},
        ],
    }
