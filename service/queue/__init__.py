"""Job queue backends behind one interface (``JobQueue``): the embedded SQLite one (default) and Redis
(``service.queue.distributed``, selected by ``GSIC_QUEUE_URL``, with its ``gsic worker`` processes in
``service.queue.worker``)."""
