"""Where the shop's exports land: a folder (FUNNELPULSE_HOME/data_raw by default) or a GCS bucket
prefix (FUNNELPULSE_RAW=gs://bucket/prefix)."""

from __future__ import annotations

from dataclasses import dataclass

from dagster import ConfigurableResource
from dagster_gcp import GCSResource
from pydantic import Field

from funnelpulse_dagster.lakehouse.ingest import EXPORT_SUFFIXES, list_exports


@dataclass(frozen=True)
class LandedExport:
    """An export file in the landing folder or bucket, and what identifies its content."""

    name: str
    uri: str
    fingerprint: str  # local: size and mtime; GCS: generation, md5 and size


class RawDataResource(ConfigurableResource):
    """The landing folder of Kaggle-format exports (`*.csv`, `*.csv.gz`): a path, `file://` or
    `gs://bucket/prefix`."""

    uri: str = Field(description="Folder or gs:// prefix holding the exports (FUNNELPULSE_RAW).")
    gcp_project: str = Field(
        default="funnelpulse-local",
        description="GCP project of the GCS client when `uri` is gs:// (FUNNELPULSE_GCP_PROJECT); "
        "credentials come from the environment (a service account, or STORAGE_EMULATOR_HOST).",
    )

    def exports(self) -> list[LandedExport]:
        """The exports directly under the landing folder, sorted by URI. A `gs://` bucket is listed
        with dagster-gcp's GCS client (made only then, so a laptop needs no credentials): an
        object's generation changes with every overwrite, so (generation, md5, size) names exactly
        one content of it."""
        if not self.uri.startswith("gs://"):
            return [LandedExport(e.name, e.uri, e.fingerprint) for e in list_exports(self.uri)]
        bucket, _, prefix = self.uri.removeprefix("gs://").partition("/")
        prefix = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        client = GCSResource(project=self.gcp_project).get_client()
        found = []
        for blob in client.list_blobs(bucket, prefix=prefix, delimiter="/"):
            name = blob.name[len(prefix) :]
            if name.endswith(EXPORT_SUFFIXES) and not name.startswith((".", "_")):
                fingerprint = f"{blob.generation}:{blob.md5_hash}:{blob.size}"
                found.append(LandedExport(name, f"gs://{bucket}/{blob.name}", fingerprint))
        return sorted(found, key=lambda e: e.uri)
