"""The engine: jobs on per-queue Redis Streams, consumed by consumer groups, retried by
reclaiming pending entries, dead-lettered after their last attempt.

The public surface is re-exported here; see README.md for how jobs map onto streams.
"""

from streams.admin import QueueAdmin
from streams.connection import connect
from streams.context import Handler, JobContext
from streams.errors import (InvalidJob, JobNotFound, JobStateConflict, JobTimeout, StreamsError,
                            UnknownQueue, UnrecoverableError)
from streams.figures import QueueStatus
from streams.job import Job, JobState
from streams.keys import Lane, QueueKeys
from streams.listing import DeadLetter
from streams.producer import AddedJob, JobSpec, Producer
from streams.runner import run_workers
from streams.signals_sdk import SignalPublisher, SyncSignalPublisher
from streams.worker import QueueWorker

__all__ = [
    "AddedJob", "DeadLetter", "Handler", "InvalidJob", "Job", "JobContext", "JobNotFound",
    "JobSpec", "JobState", "JobStateConflict", "JobTimeout", "Lane", "Producer", "QueueAdmin",
    "QueueKeys", "QueueStatus", "QueueWorker", "SignalPublisher", "StreamsError", "SyncSignalPublisher",
    "UnknownQueue", "UnrecoverableError", "connect", "run_workers",
]
