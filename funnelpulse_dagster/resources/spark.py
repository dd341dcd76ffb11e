"""The Spark resource: one lazily started SparkSession per run, configured from the environment.

Three ways to get a session, chosen by configuration only:
- the home's local server (the default, `remote` empty, `mode` local-server): a Spark Connect
  client of the warm local server every run, the CLI and `dagster dev` of this FUNNELPULSE_HOME
  share, started on first use with `master` and the settings below (runtime/spark_server.py);
- in-process (`mode` in-process, FUNNELPULSE_SPARK_MODE): a classic SparkSession in the run's
  own process, `master` local[*] on a laptop or any cluster master;
- remote (`remote` = `sc://host:port[/;token=…;use_ssl=true]`, FUNNELPULSE_SPARK_REMOTE): a Spark
  Connect client of a server someone else runs: a Dataproc cluster's Connect endpoint,
  Databricks, Kubernetes. `remote = "dataproc-serverless"` opens a Dataproc Serverless session
  through Google's `dataproc-spark-connect` package.
The code above this resource is the same in all three: it never reaches into the JVM from Python.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dagster_pyspark import LazyPySparkResource
from pydantic import Field

from funnelpulse_dagster.runtime.profiles import LAPTOP, SparkProfile, spark_profile
from funnelpulse_dagster.runtime.spark_session import (
    SparkUnavailable,
    classic_session,
    connect_session,
    keep_alive,
    spark_conf,
)

LOCAL_SERVER = "local-server"
IN_PROCESS = "in-process"
SPARK_MODES = (LOCAL_SERVER, IN_PROCESS)

__all__ = ["IN_PROCESS", "LOCAL_SERVER", "SPARK_MODES", "SparkResource", "SparkUnavailable"]


class SparkResource(LazyPySparkResource):
    """Spark for FunnelPulse: the home's warm local server by default, in-process or a remote
    Spark Connect endpoint by configuration.

    The session starts on first use, so steps that never touch Spark never pay for it, and every
    step of a run gets the same session.
    """

    master: str = Field(
        default="local[*]",
        description="Spark master URL of the in-process session (FUNNELPULSE_SPARK_MASTER); "
        "ignored when `remote` is set.",
    )
    remote: str = Field(
        default="",
        description="Spark Connect URL `sc://host:port[/;token=…;use_ssl=true]`, or "
        "`dataproc-serverless` (FUNNELPULSE_SPARK_REMOTE). Empty: `mode` decides.",
    )
    mode: str = Field(
        default=LOCAL_SERVER,
        description="Without `remote`: `local-server` (a warm Spark Connect server this home's runs "
        "share, started on first use) or `in-process` (a Spark JVM in each run) (FUNNELPULSE_SPARK_MODE).",
    )
    home: str = Field(
        default="",
        description="The FUNNELPULSE_HOME whose local server the runs share; empty: the environment's.",
    )
    idle_minutes: float = Field(
        default=30.0,
        description="A local server started by a run stops after this long without a job, a query "
        "or a client call (FUNNELPULSE_SPARK_IDLE_MINUTES; 0: never).",
    )
    driver_memory: str = Field(default="6g", description="spark.driver.memory of the in-process driver JVM.")
    profile: str = Field(
        default=LAPTOP,
        description="What Spark's settings are sized for: `laptop` (a few local cores) or `cluster` "
        "(many executors) (FUNNELPULSE_SPARK_PROFILE; runtime/profiles.py).",
    )
    shuffle_partitions: int | None = Field(
        default=None, description="spark.sql.shuffle.partitions; empty: the profile's."
    )
    spark_config: dict[str, Any] = Field(default_factory=dict, description="Extra Spark settings.")

    @property
    def is_remote(self) -> bool:
        return bool(self.remote.strip())

    def session_conf(self) -> dict[str, Any]:
        """The settings of this resource's sessions (and of the local server it starts)."""
        return spark_conf(
            self.master, self.driver_memory, self.shuffle_partitions, self.spark_config, self.profile
        )

    @property
    def sized_for(self) -> SparkProfile:
        """The Spark profile this resource's sessions are sized by."""
        return spark_profile(self.profile)

    def _init_session(self) -> None:
        if self._spark_session is not None:
            return
        conf = self.session_conf()
        if self.is_remote:
            self._spark_session = connect_session(self.remote.strip(), conf)
        elif self.mode == IN_PROCESS:
            self._spark_session = classic_session(conf)
        elif self.mode == LOCAL_SERVER:
            from funnelpulse_dagster.runtime import spark_server
            from funnelpulse_dagster.settings import home_dir

            home = Path(self.home).expanduser() if self.home.strip() else home_dir()
            with spark_server.claimed(home, conf, self.idle_minutes) as url:
                self._spark_session = connect_session(url, conf)
            if self.idle_minutes:
                keep_alive(self._spark_session, seconds=min(60.0, self.idle_minutes * 20))
        else:
            raise SparkUnavailable(
                f"FUNNELPULSE_SPARK_MODE={self.mode!r}: expected one of {', '.join(SPARK_MODES)}"
            )
