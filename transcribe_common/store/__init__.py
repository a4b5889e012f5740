"""The object store behind a small interface, with a local-folder implementation for the embedded
stack and an S3/MinIO one for production. Only the S3 implementation imports ``minio``."""

from transcribe_common.store.base import ObjectInfo, ObjectStore, ObjectWriter

__all__ = ["ObjectInfo", "ObjectStore", "ObjectWriter"]
