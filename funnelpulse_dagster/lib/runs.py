"""Run a named job of this code location in the calling process, as a run the UI can place.

`dagster job execute` and `dg launch --job` execute a job in-process too, but their runs carry
no remote origin (no code location, no repository), so the UI lists them and leaves them off
Overview → Timeline and the location's pages. Here the run is created with the origin the
webserver gives the same job (location `CODE_LOCATION`, the singleton repository), then executed
in this process, its events on this terminal, on the instance `DAGSTER_HOME` names."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

CODE_LOCATION = "funnelpulse"  # workspace.yaml's location_name and [tool.dg.project]'s (a test holds them)
DEFINITIONS_MODULE = "funnelpulse_dagster.definitions"


def launch_in_process(
    job_name: str,
    *,
    run_config: Mapping[str, object] | None = None,
    tags: Mapping[str, str] | None = None,
) -> bool:
    """Execute `job_name` as one run on the current instance; True when it succeeded."""
    from dagster import DagsterInstance
    from dagster._core.execution.api import create_execution_plan, execute_run
    from dagster._core.remote_origin import InProcessCodeLocationOrigin
    from dagster._core.remote_representation.code_location import InProcessCodeLocation
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
    from dagster._utils.hosted_user_process import recon_job_from_origin

    target = LoadableTargetOrigin(
        executable_path=sys.executable, module_name=DEFINITIONS_MODULE, working_directory=os.getcwd()
    )
    origin = InProcessCodeLocationOrigin(target, location_name=CODE_LOCATION)
    with DagsterInstance.get() as instance, InProcessCodeLocation(origin, instance=instance) as location:
        (repository,) = location.get_repositories().values()
        remote_job = repository.get_full_job(job_name)
        recon_job = recon_job_from_origin(remote_job.get_python_origin())
        repository_load_data = recon_job.repository.get_definition().repository_load_data
        recon_job = recon_job.with_repository_load_data(repository_load_data)
        job_def = recon_job.get_definition()
        plan = create_execution_plan(
            recon_job, run_config=run_config, instance_ref=instance.get_ref(), tags=tags
        )
        run = instance.create_run_for_job(
            job_def=job_def,
            execution_plan=plan,
            run_config=run_config,
            tags=tags,
            remote_job_origin=remote_job.get_remote_origin(),
            job_code_origin=recon_job.get_python_origin(),
            repository_load_data=repository_load_data,
        )
        result = execute_run(recon_job, run, instance, raise_on_error=False)
        return result.success
