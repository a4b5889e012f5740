"""Contracts shared by the services: job manifest and status, bucket layout, Redis key names,
MinIO event records, the object store interface and the one function that moves a job between
states."""
