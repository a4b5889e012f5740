"""The embedded stack: every service on one machine with no Docker, a real redis-server, and a
local folder standing in for MinIO."""
