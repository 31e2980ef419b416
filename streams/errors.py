"""The engine's exceptions, with one root so callers can catch them all.

    StreamsError
    ├── UnknownQueue        a queue name that is not in the policy table
    ├── InvalidJob          job data or options that cannot be enqueued
    │   └── EntryTooLarge   data over MAX_ENTRY_BYTES (the API answers 413)
    ├── JobNotFound         no record for a job id
    ├── JobStateConflict    the action does not fit the job's state (e.g. remove an active job)
    └── UnrecoverableError  raised by a handler: fail now, skip the remaining attempts

A handler may raise anything else: it counts as a failure against the queue's
`attempts`. ``JobTimeout`` is recorded when an attempt runs past the queue's `timeout`.
"""


class StreamsError(Exception):
    """Root of the engine's exceptions."""


class UnknownQueue(StreamsError):
    def __init__(self, queue: str) -> None:
        super().__init__(f"unknown queue {queue!r}")
        self.queue = queue


class InvalidJob(StreamsError):
    """The job cannot be enqueued as given; the message says which field and why."""


class EntryTooLarge(InvalidJob):
    """The job's data, as JSON, is longer than MAX_ENTRY_BYTES: refused where it is added,
    as the worker would dead-letter it."""

    def __init__(self, size: int, limit: int, where: str = "") -> None:
        super().__init__(f"{where}data is {size} bytes of JSON, over the limit of {limit} (MAX_ENTRY_BYTES)")
        self.size, self.limit = size, limit


class JobNotFound(StreamsError):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id!r} not found")
        self.job_id = job_id


class JobStateConflict(StreamsError):
    """The job exists but is in a state that does not allow the action."""


class UnrecoverableError(StreamsError):
    """Raised by a handler when retrying cannot help: the job is dead-lettered at once."""


class JobTimeout(StreamsError):
    """An attempt ran longer than its queue's `timeout`."""
