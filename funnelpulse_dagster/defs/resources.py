"""The deployment's resources and executor, for every definition under defs/."""

from dagster import Definitions, definitions, in_process_executor

from funnelpulse_dagster.resources import build_resources


@definitions
def resources() -> Definitions:
    return Definitions(
        resources=build_resources(),
        # one process, one SparkSession per run: the multiprocess executor would start a JVM per step
        executor=in_process_executor,
    )
