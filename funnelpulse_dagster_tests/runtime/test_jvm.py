"""The local file system class the project compiles for Spark (funnelpulse_dagster/runtime/jvm)."""

import logging
import os
import stat

import pytest

from funnelpulse_dagster.runtime.jvm import (
    LOCAL_FILE_SYSTEM,
    compiled_classes,
    ensure_java_home,
    java_cache_root,
    with_local_file_system,
)

LOCAL = {"spark.master": "local[2]"}


@pytest.mark.both_passes  # each pass's own session
def test_every_session_of_the_pass_writes_local_files_through_it(spark, tmp_path):
    """Both modes: the in-process session and the local Connect server run with it, and a
    write through it lands with the permissions Hadoop gives files: 0666 less Hadoop's own
    umask (fs.permissions.umask-mode, 022), whatever the process's umask."""
    assert spark.conf.get("spark.hadoop.fs.file.impl") == LOCAL_FILE_SYSTEM
    spark.range(5).write.parquet(str(tmp_path / "out"))
    assert spark.read.parquet(str(tmp_path / "out")).count() == 5
    written = list((tmp_path / "out").iterdir())
    assert any(p.name.startswith("part-") for p in written) and any(p.name.endswith(".crc") for p in written)
    for path in written:
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path.name


@pytest.mark.spark_mode_independent  # the same class in both modes, driven through the test's own JVM
def test_it_sets_the_same_permission_bits_as_hadoops_own(spark, tmp_path):
    """The reference is Hadoop's RawLocalFileSystem, which runs `chmod` for each call."""
    jvm = spark._jvm
    conf = spark._jsc.hadoopConfiguration()
    root = jvm.java.net.URI.create("file:///")
    ours, hadoops = (
        jvm.funnelpulse.LocalFileSystemWithoutForks.Raw(),
        jvm.org.apache.hadoop.fs.RawLocalFileSystem(),
    )
    ours.initialize(root, conf)
    hadoops.initialize(root, conf)
    for mode in (0o644, 0o600, 0o640, 0o755, 0o700, 0o777, 0o000, 0o444, 0o1777):
        modes = []
        for name, fs in (("ours", ours), ("hadoop", hadoops)):
            path = tmp_path / f"{name}-{mode:o}"
            path.mkdir() if mode & 0o1000 else path.write_text("x")
            fs.setPermission(
                jvm.org.apache.hadoop.fs.Path(path.as_uri()),
                jvm.org.apache.hadoop.fs.permission.FsPermission.createImmutable(mode),
            )
            modes.append(stat.S_IMODE(path.stat().st_mode))
        assert modes[0] == modes[1] == mode, (oct(mode), [oct(m) for m in modes])


def test_the_settings_apply_to_a_local_master_only_and_keep_the_users_choices(tmp_path):
    java_home = ensure_java_home()
    conf = with_local_file_system(
        LOCAL | {"spark.driver.extraClassPath": "/opt/mine.jar"}, java_home, java_cache_root()
    )
    classes = compiled_classes(java_home, java_cache_root())
    assert conf["spark.hadoop.fs.file.impl"] == LOCAL_FILE_SYSTEM
    assert conf["spark.driver.extraClassPath"] == f"{classes}{os.pathsep}/opt/mine.jar"
    for untouched in (
        {"spark.master": "yarn"},
        {"spark.master": "spark://somewhere:7077"},
        LOCAL | {"spark.hadoop.fs.file.impl": "org.apache.hadoop.fs.LocalFileSystem"},
    ):
        assert with_local_file_system(untouched, java_home, java_cache_root()) == untouched


def test_a_failed_compile_warns_and_leaves_hadoops_file_system(tmp_path, caplog):
    """No Java where JAVA_HOME says: the session would still work, only slower."""
    with caplog.at_level(logging.WARNING, logger="funnelpulse_dagster.runtime.jvm"):
        conf = with_local_file_system(LOCAL, str(tmp_path / "no-java"), tmp_path / "cache")
    assert conf == LOCAL
    assert "forks chmod per file" in caplog.text
    assert not list((tmp_path / "cache").glob("jvm-classes-*")), "a failed compile leaves no cache"


def test_a_missing_or_corrupt_locked_jar_fails_at_once_naming_the_set_up(tmp_path):
    """Nothing is downloaded at run time: the locked jars are checked against their SHA-256,
    and a missing or altered one stops the session before any JVM starts."""
    import shutil

    from funnelpulse_dagster.runtime.jvm import artifacts

    good = artifacts.jars(artifacts.SPARK)  # the set-up's folder: all there, all verified
    for jar in good:
        shutil.copy(jar, tmp_path / jar.name)
    assert [p.name for p in artifacts.jars(artifacts.SPARK, tmp_path)] == [p.name for p in good]

    corrupt = tmp_path / good[0].name
    altered = bytearray(corrupt.read_bytes())
    altered[len(altered) // 2] ^= 0xFF  # one byte changed, the size kept
    corrupt.write_bytes(bytes(altered))
    with pytest.raises(artifacts.MissingJars, match=r"differs from the lock.*scripts/setup\.sh"):
        artifacts.jars(artifacts.SPARK, tmp_path)
    corrupt.unlink()
    with pytest.raises(artifacts.MissingJars, match=r"is missing.*scripts/setup\.sh"):
        artifacts.jars(artifacts.SPARK, tmp_path)
