"""The public REST API. It writes inputs and manifests to the store and never enqueues: the bucket
notification for the manifest does that, so REST jobs and inbox drops take the same road."""
