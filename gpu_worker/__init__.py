"""Transcription worker: one model per process, jobs from RQ, results and status to the bucket."""
