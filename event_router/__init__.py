"""Turns bucket notifications into RQ jobs."""
