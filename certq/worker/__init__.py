"""The worker daemon (`python -m certq.worker`): runs certification jobs from the queue, serves health and metrics."""
