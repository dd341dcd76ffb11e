"""The JVM artifacts FunnelPulse runs with, pinned in `artifacts.lock.json` and fetched at set-up.

Spark's connectors and the test suite's Apache Kafka broker are Maven artifacts, not wheels. The
lock file beside this module names every jar (transitive ones included) by its coordinate and
SHA-256, in groups:
- `spark`: what every Spark session puts on its class path (`spark.jars`), beyond the jars the
  pyspark wheel ships: Spark's Kafka source and its dependencies;
- `kafka-broker`: a one-node KRaft Apache Kafka (streaming/kafka_broker.py).

`fetch` (run by scripts/setup.sh: `python -m funnelpulse_dagster.runtime.jvm.artifacts fetch`) downloads
exactly the locked jars into the jar folder and checks each checksum: from a Maven repository's
plain file layout (Maven Central, or the mirror FUNNELPULSE_MAVEN_REPOSITORY names), several at a
time, or with Apache Ivy (the resolver Spark itself ships, on the project's Java) when
FUNNELPULSE_IVY_SETTINGS names an Ivy configuration. The lock already lists every jar, so the
download needs no resolution (Ivy would read each jar's chain of parent POMs first). Nothing is
resolved or downloaded at run time: `jars(group)` only finds and verifies the files, and raises
MissingJars, naming the set-up command, when one is missing or differs from the lock.

`lock` (a maintainer's command, after changing a group's roots) resolves the roots transitively
and rewrites the lock. For the `spark` group it leaves out every jar whose artifact pyspark
already ships, so the session never has two versions of a class.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import quoteattr

LOCK_FILE = Path(__file__).with_name("artifacts.lock.json")
ENV_JARS = "FUNNELPULSE_JARS"
# a corporate mirror or proxy: an Ivy settings file that names it (then Ivy downloads), or a
# Maven repository's base URL (the set-up downloads its files directly; Maven Central otherwise)
ENV_IVY_SETTINGS = "FUNNELPULSE_IVY_SETTINGS"
ENV_MAVEN_REPOSITORY = "FUNNELPULSE_MAVEN_REPOSITORY"
MAVEN_CENTRAL = "https://repo1.maven.org/maven2"
# the Java trust store for the download: the operating system's where it has one, so that a
# TLS-inspecting proxy's certificate authority, installed system-wide, is trusted by Ivy too
ENV_TRUST_STORE = "FUNNELPULSE_JAVA_TRUSTSTORE"
_SYSTEM_TRUST_STORES = ("/etc/ssl/certs/java/cacerts", "/etc/pki/java/cacerts")
SETUP_COMMAND = "./scripts/setup.sh (or: python -m funnelpulse_dagster.runtime.jvm.artifacts fetch)"
SPARK = "spark"
# the GCS connector (`gs://` inside Spark): one shaded jar that bundles its dependencies
GCS = "gcs"
KAFKA_BROKER = "kafka-broker"


class MissingJars(RuntimeError):
    """A locked jar is not in the jar folder, or its checksum differs from the lock."""


@dataclass(frozen=True)
class Jar:
    coordinate: str  # group:artifact:version[:classifier]
    sha256: str

    @property
    def parts(self) -> tuple[str, str, str, str]:
        group, artifact, version, *rest = self.coordinate.split(":")
        return group, artifact, version, (rest[0] if rest else "")

    @property
    def repository_path(self) -> str:
        """The jar's path in a Maven repository's file layout."""
        group, artifact, version, classifier = self.parts
        suffix = f"-{classifier}" if classifier else ""
        return f"{group.replace('.', '/')}/{artifact}/{version}/{artifact}-{version}{suffix}.jar"

    @property
    def file_name(self) -> str:
        group, artifact, version, classifier = self.parts
        return f"{group}+{artifact}+{version}{'+' + classifier if classifier else ''}.jar"


def read_lock(path: Path = LOCK_FILE) -> dict:
    return json.loads(path.read_text())


def locked_jars(group: str, lock: dict | None = None) -> list[Jar]:
    entries = (lock or read_lock())["groups"][group]["jars"]
    return [Jar(e["coordinate"], e["sha256"]) for e in entries]


def jar_dir() -> Path:
    """Where fetched jars live: FUNNELPULSE_JARS, else beside the environment's packages (the
    project's .venv), so a fresh environment fetches its own."""
    configured = os.environ.get(ENV_JARS, "").strip()
    return Path(configured) if configured else Path(sys.prefix) / "share" / "funnelpulse" / "jars"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _problem(jar: Jar, folder: Path) -> str | None:
    """Why `jar` in `folder` is not the locked file, or None when it is (read every time: a
    file changed in place is caught)."""
    path = folder / jar.file_name
    if not path.exists():
        return f"{jar.coordinate} is missing ({path})"
    if _sha256(path) != jar.sha256:
        return f"{jar.coordinate} differs from the lock's checksum ({path})"
    return None


def problems(group: str, folder: Path | None = None) -> list[str]:
    """What is wrong with a group's jars in the folder: missing files and checksum mismatches."""
    folder = folder or jar_dir()
    return [p for p in (_problem(jar, folder) for jar in locked_jars(group)) if p]


def jars(group: str, folder: Path | None = None) -> list[Path]:
    """The group's jar files, verified against the lock; MissingJars names what is wrong."""
    folder = folder or jar_dir()
    wrong = problems(group, folder)
    if wrong:
        raise MissingJars(
            f"the JVM artifacts of group {group!r} are not set up: {'; '.join(wrong[:3])}"
            f"{f' (and {len(wrong) - 3} more)' if len(wrong) > 3 else ''}. Run {SETUP_COMMAND}."
        )
    return [folder / jar.file_name for jar in locked_jars(group)]


# -- Ivy: downloading at set-up and locking ---------------------------------------------------
def _ivy_jar() -> Path:
    from pyspark.find_spark_home import _find_spark_home

    found = sorted(Path(_find_spark_home(), "jars").glob("ivy-*.jar"))
    if not found:
        raise RuntimeError("pyspark ships no Apache Ivy jar; cannot fetch the JVM artifacts")
    return found[-1]


def _ivy_cache() -> Path:
    """Ivy's download cache, kept beside the jar folder so a second fetch or lock is quick."""
    return jar_dir().parent / "ivy-cache"


def _trust_store_options() -> list[str]:
    configured = os.environ.get(ENV_TRUST_STORE, "").strip()
    candidates = [configured] if configured else list(_SYSTEM_TRUST_STORES)
    for store in candidates:
        if store and Path(store).exists():
            return [f"-Djavax.net.ssl.trustStore={store}"]
    return []


def _ivy_file(dependencies: list[tuple[str, str, str, str]], transitive: bool) -> str:
    lines = [
        '<ivy-module version="2.0" xmlns:m="http://ant.apache.org/ivy/maven">',
        '  <info organisation="funnelpulse" module="jvm-artifacts"/>',
        '  <configurations><conf name="default"/></configurations>',
        "  <dependencies>",
    ]
    for group, artifact, version, classifier in dependencies:
        attrs = f"org={quoteattr(group)} name={quoteattr(artifact)} rev={quoteattr(version)}"
        mapping = 'conf="default->default"' if transitive else 'conf="default->master" transitive="false"'
        if classifier:
            lines.append(
                f'    <dependency {attrs} {mapping}><artifact name={quoteattr(artifact)} type="jar" '
                f'ext="jar" m:classifier={quoteattr(classifier)}/></dependency>'
            )
        else:
            lines.append(f"    <dependency {attrs} {mapping}/>")
    lines += ["  </dependencies>", "</ivy-module>"]
    return "\n".join(lines) + "\n"


def _run_ivy(dependencies: list[tuple[str, str, str, str]], transitive: bool, out: Path, work: Path) -> None:
    from funnelpulse_dagster.runtime.jvm import ensure_java_home

    ivy_xml = work / "ivy.xml"
    ivy_xml.write_text(_ivy_file(dependencies, transitive))
    java = Path(ensure_java_home(), "bin", "java")
    command = [str(java), *_trust_store_options(), "-jar", str(_ivy_jar())]
    settings = os.environ.get(ENV_IVY_SETTINGS, "").strip()
    if settings:
        command += ["-settings", settings]
    command += [
        "-ivy", str(ivy_xml),
        "-confs", "default",
        "-cache", str(_ivy_cache()),
        "-retrieve", str(out / "[organisation]+[artifact]+[revision](+[classifier]).[ext]"),
        "-types", "jar", "bundle",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(
            f"Ivy could not fetch the JVM artifacts:\n{result.stdout[-4000:]}{result.stderr[-2000:]}"
        )


def fetch(groups: list[str] | None = None, folder: Path | None = None, log=print) -> Path:
    """Download the locked jars that are missing or wrong, check every checksum, and return the
    folder. Safe to run again: a group already in place costs a checksum pass."""
    folder = folder or jar_dir()
    lock = read_lock()
    for group in groups or list(lock["groups"]):
        todo = {j.file_name: j for j in locked_jars(group, lock) if _problem(j, folder)}
        if todo:
            log(f"fetching {len(todo)} JVM artifact(s) of group {group!r} into {folder}")
            _fetch_exactly(todo, folder)
    return folder


def _fetch_exactly(todo: dict[str, Jar], folder: Path) -> None:
    """Download `todo` into `folder`, each file checked against the lock before it is moved in.
    With Ivy, one run per group: a group never holds two versions of one artifact, while two
    groups may (Spark's Kafka client and the broker's are different versions)."""
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="jvm-artifacts-", dir=folder.parent) as tmp:
        out = Path(tmp) / "out"
        if os.environ.get(ENV_IVY_SETTINGS, "").strip():
            _run_ivy([j.parts for j in todo.values()], transitive=False, out=out, work=Path(tmp))
        else:
            _download(todo, out, os.environ.get(ENV_MAVEN_REPOSITORY, "").strip() or MAVEN_CENTRAL)
        for name, jar in todo.items():
            path = out / name
            if not path.exists():
                raise RuntimeError(f"the download gave no file for {jar.coordinate} (expected {name})")
            digest = _sha256(path)
            if digest != jar.sha256:
                raise RuntimeError(f"{jar.coordinate}: SHA-256 {digest} differs from the lock's {jar.sha256}")
            os.replace(path, folder / name)


def _download(todo: dict[str, Jar], out: Path, repository: str, attempts: int = 3) -> None:
    """Each jar of `todo` from `repository`'s file layout into `out`, eight at a time."""
    import time
    import urllib.request
    from concurrent.futures import ThreadPoolExecutor

    out.mkdir(parents=True, exist_ok=True)

    def one(item: tuple[str, Jar]) -> None:
        name, jar = item
        url = f"{repository.rstrip('/')}/{jar.repository_path}"
        for attempt in range(1, attempts + 1):
            try:
                with urllib.request.urlopen(url, timeout=60) as response, (out / name).open("wb") as file:
                    while chunk := response.read(1 << 20):
                        file.write(chunk)
                return
            except OSError as exc:
                if attempt == attempts:
                    raise RuntimeError(f"could not download {jar.coordinate} from {url}: {exc}") from exc
                time.sleep(2 * attempt)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(one, todo.items()))


def _shipped_artifacts() -> set[str]:
    """Artifact names of the jars pyspark ships."""
    from funnelpulse_dagster.runtime.jvm import spark_jars

    names = set()
    for jar in spark_jars():
        try:
            names.add(_split_artifact_version(jar.stem)[0])
        except ValueError:
            names.add(jar.stem)
    return names


def lock(path: Path = LOCK_FILE, log=print) -> None:
    """Resolve each group's roots transitively and rewrite the lock with every jar's checksum."""
    current = read_lock(path)
    shipped = _shipped_artifacts()
    for name, group in current["groups"].items():
        roots = [tuple((r.split(":") + [""])[:4]) for r in group["roots"]]
        with tempfile.TemporaryDirectory(prefix="jvm-lock-") as tmp:
            work, out = Path(tmp), Path(tmp) / "out"
            # a group may take its roots alone (a shaded jar carries its dependencies inside)
            _run_ivy(roots, transitive=group.get("transitive", True), out=out, work=work)
            entries = []
            for jar in sorted(out.glob("*.jar")):
                coordinate = jar.stem.split("+")  # group, artifact, version[, classifier]
                if name == SPARK and coordinate[1] in shipped:
                    continue
                entries.append({"coordinate": ":".join(coordinate), "sha256": _sha256(jar)})
        group["jars"] = entries
        log(f"{name}: {len(entries)} jar(s)")
    path.write_text(json.dumps(current, indent=2) + "\n")


def _split_artifact_version(text: str) -> tuple[str, str]:
    """'kafka-clients-3.9.1' → ('kafka-clients', '3.9.1'): the version starts at the first
    dash followed by a digit."""
    for index, char in enumerate(text):
        if char == "-" and text[index + 1 : index + 2].isdigit():
            return text[:index], text[index + 1 :]
    raise ValueError(f"no version in {text!r}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="FunnelPulse's pinned JVM artifacts")
    sub = parser.add_subparsers(dest="command", required=True)
    fetch_cmd = sub.add_parser("fetch", help="download the locked jars (set-up)")
    fetch_cmd.add_argument("--group", action="append", help="only these groups (repeatable)")
    sub.add_parser("lock", help="resolve the roots and rewrite the lock (maintainers)")
    sub.add_parser("verify", help="check every locked jar's presence and checksum")
    sub.add_parser("path", help="print the jar folder")
    args = parser.parse_args(argv)
    if args.command == "fetch":
        fetch(args.group)
    elif args.command == "lock":
        lock()
    elif args.command == "path":
        print(jar_dir())
    else:
        wrong = [p for g in read_lock()["groups"] for p in problems(g)]
        if wrong:
            sys.exit("\n".join(wrong) + f"\nRun {SETUP_COMMAND}.")
        print(f"every locked jar is in {jar_dir()} with its checksum")


if __name__ == "__main__":
    main()
