"""Job queue backends behind one interface (``JobQueue``): the embedded SQLite one (default) and Redis
(``service.queue.distributed``, selected by ``GSIC_QUEUE_URL``)."""

from service.queue.base import (
    IdempotencyConflict,
    JobNotFound,
    JobQueue,
    QueueFull,
    QueueStats,
    ResultExpired,
    ResultNotReady,
    SubmitOutcome,
    WorkerInfo,
)

__all__ = ["IdempotencyConflict", "JobNotFound", "JobQueue", "QueueFull", "QueueStats", "ResultExpired",
           "ResultNotReady", "SubmitOutcome", "WorkerInfo"]
