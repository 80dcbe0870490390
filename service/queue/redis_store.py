"""Job records, uploads and results in Redis, shared by every API replica and encode worker.

Layout (all keys under ``gsic:``):

* ``job:{id}``: a hash of the ``JobRecord`` fields, each JSON-encoded, plus ``fingerprint``,
  ``idempotency_key`` and ``owner`` (the worker attempt that holds it while it runs);
* ``input:{id}`` (dropped when the job ends) and ``result:{id}`` (expires after the retention period);
* ``idem:{key}``: the job of an Idempotency-Key; it expires with the job's result;
* ``queued`` and ``running``: sets of ids; ``done:{state}``: finished ids scored by their finish time;
* ``workers``: a hash of worker name -> its last heartbeat (JSON).

Every state change is one Lua script, so it is atomic across processes: a result is written only by the
attempt that owns the running job and only once, and a cancel races with nothing. The job hash outlives its
result (``RECORD_LIFETIMES`` retention periods), so an expired result answers 410, not 404.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import fields

from redis.asyncio import Redis

from codec import EncodeOptions
from service.jobs import JobRecord, JobStatus, Submission, client_params
from service.queue.base import ClientLimit, IdempotencyConflict, QueueFull, SubmitOutcome, updated_mean

PREFIX = "gsic:"
RECORD_LIFETIMES = 7  # a finished job's record is kept this many retention periods
NO_LIMIT = 1 << 30  # the per-client limits of a caller that sets none

_RECORD_FIELDS = tuple(f.name for f in fields(JobRecord) if f.name not in ("id", "expires_at"))
_QUEUED, _RUNNING, _WORKERS, _MEAN = (PREFIX + k for k in ("queued", "running", "workers", "mean_seconds"))


def _key(kind: str, name: str) -> str:
    return f"{PREFIX}{kind}:{name}"


def _done(state: JobStatus) -> str:
    return _key("done", state.value)


# Ends a queued or running job. KEYS: job, queued, running, done zset, input, result; ARGV: id, finished_at,
# retention ms, record lifetime ms, result bytes ("" for none), then field/value pairs. The job's
# Idempotency-Key is forgotten when its result is.
_FINISH_BODY = """
local idem = cjson.decode(redis.call('HGET', KEYS[1], 'idempotency_key') or 'null')
if type(idem) == 'string' then redis.call('PEXPIRE', '""" + PREFIX + """idem:' .. idem, ARGV[3]) end
redis.call('HSET', KEYS[1], 'finished_at', ARGV[2], unpack(ARGV, 6))
redis.call('HDEL', KEYS[1], 'owner')
redis.call('SREM', KEYS[2], ARGV[1])
redis.call('SREM', KEYS[3], ARGV[1])
redis.call('ZADD', KEYS[4], ARGV[2], ARGV[1])
redis.call('DEL', KEYS[5])
if ARGV[5] ~= '' then redis.call('SET', KEYS[6], ARGV[5], 'PX', ARGV[3]) end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
"""

# Jobs in the set KEYS[n] whose client is ARGV[client] (a JSON string): read from the store, so every API replica
# counts the same. The sets are bounded (the queue by GSIC_QUEUE_SIZE, the running jobs by the workers).
_COUNT_CLIENT = """
local function of_client(set_key, client, except_id)
  local n = 0
  for _, id in ipairs(redis.call('SMEMBERS', set_key)) do
    if id ~= except_id and redis.call('HGET', '""" + PREFIX + """job:' .. id, 'client') == client then n = n + 1 end
  end
  return n
end
"""

# KEYS: queued, idem (or ""), job, input; ARGV: id, queue size, input bytes, client (JSON, "" for none), the
# client's most queued jobs, then field/value pairs.
_SUBMIT = _COUNT_CLIENT + """
if KEYS[2] ~= '' then
  local existing = redis.call('GET', KEYS[2])
  if existing then return {'existing', existing} end
end
local depth = redis.call('SCARD', KEYS[1])
if depth >= tonumber(ARGV[2]) then return {'full', tostring(depth)} end
if ARGV[4] ~= '' then
  local mine = of_client(KEYS[1], ARGV[4], '')
  if mine >= tonumber(ARGV[5]) then return {'client_limit', tostring(mine)} end
end
if KEYS[2] ~= '' then redis.call('SET', KEYS[2], ARGV[1]) end
redis.call('HSET', KEYS[3], unpack(ARGV, 6))
redis.call('SET', KEYS[4], ARGV[3])
redis.call('SADD', KEYS[1], ARGV[1])
return {'created', ARGV[1]}
"""

# KEYS: job, queued, running; ARGV: id, owner, started_at, attempt, the most running jobs of one client. Returns
# the status before the claim, or "busy" (nothing changed) while the job's client has that many running.
_CLAIM = _COUNT_CLIENT + """
local status = redis.call('HGET', KEYS[1], 'status')
local client = redis.call('HGET', KEYS[1], 'client')
if (status == '"queued"' or status == '"running"') and client and client ~= 'null'
   and of_client(KEYS[3], client, ARGV[1]) >= tonumber(ARGV[5]) then
  return 'busy'
end
if status == '"queued"' or status == '"running"' then
  redis.call('HSET', KEYS[1], 'status', '"running"', 'owner', ARGV[2], 'started_at', ARGV[3],
             'attempts', ARGV[4], 'progress_iteration', '0', 'progress_total', 'null', 'progress_psnr', 'null')
  redis.call('SMOVE', KEYS[2], KEYS[3], ARGV[1])
end
return status or ''
"""

# KEYS: job, lease; ARGV: owner, iteration, total, psnr, lease ms. Returns 1 to go on, 0 when canceled,
# -1 when this attempt no longer owns the job.
_PROGRESS = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return -1 end
redis.call('HSET', KEYS[1], 'progress_iteration', ARGV[2], 'progress_total', ARGV[3], 'progress_psnr', ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
if redis.call('HGET', KEYS[1], 'cancel_requested') == 'true' then return 0 end
return 1
"""

# A worker ends the job it owns. KEYS, ARGV as _FINISH_BODY, ARGV[#ARGV] is the owner (not a field).
_FINISH_OWNED = """
local owner = table.remove(ARGV)
if redis.call('HGET', KEYS[1], 'owner') ~= owner then return 0 end
""" + _FINISH_BODY

# KEYS, ARGV as _FINISH_BODY. A queued job ends canceled at once; a running one is flagged (its worker stops
# it at its next progress report). Returns the status before.
_CANCEL = """
local status = redis.call('HGET', KEYS[1], 'status')
if status == '"running"' then redis.call('HSET', KEYS[1], 'cancel_requested', 'true') end
if status ~= '"queued"' then return status or '' end
local function finish()
""" + _FINISH_BODY + """
end
finish()
return status
"""

# KEYS: job, running, queued, arq retry counter; ARGV: id, owner. A clean shutdown puts the job back; this
# start does not count as an attempt (neither in our record nor in arq's try counter).
_REQUEUE = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'status', '"queued"', 'started_at', 'null', 'progress_iteration', '0',
           'progress_total', 'null', 'progress_psnr', 'null')
redis.call('HINCRBY', KEYS[1], 'attempts', -1)
redis.call('HDEL', KEYS[1], 'owner')
redis.call('SMOVE', KEYS[2], KEYS[3], ARGV[1])
if redis.call('EXISTS', KEYS[4]) == 1 then redis.call('DECR', KEYS[4]) end
return 1
"""


# KEYS: arq's retry counter of a job.
_UNCOUNT = """
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('DECR', KEYS[1]) end
return 1
"""


class ClientBusy(Exception):
    """The job's client has GSIC_CLIENT_MAX_RUNNING jobs running; the job waits."""


class RedisJobStore:
    def __init__(self, redis: Redis, retention_seconds: float):
        self.redis = redis
        self.retention = float(retention_seconds)
        self._submit = redis.register_script(_SUBMIT)
        self._claim = redis.register_script(_CLAIM)
        self._progress = redis.register_script(_PROGRESS)
        self._finish_owned = redis.register_script(_FINISH_OWNED)
        self._cancel = redis.register_script(_CANCEL)
        self._requeue = redis.register_script(_REQUEUE)
        self._uncount = redis.register_script(_UNCOUNT)

    # ---- reading ------------------------------------------------------------------------------------------

    def _record(self, job_id: str, raw: dict[bytes, bytes]) -> JobRecord:
        values = {k.decode(): v for k, v in raw.items()}
        kwargs = {name: json.loads(values[name]) for name in _RECORD_FIELDS if name in values}
        kwargs["status"] = JobStatus(kwargs["status"])
        kwargs["params"] = EncodeOptions(**kwargs["params"])
        finished_at = kwargs.get("finished_at")
        return JobRecord(id=job_id, expires_at=None if finished_at is None else finished_at + self.retention,
                         **kwargs)

    async def get(self, job_id: str) -> JobRecord | None:
        raw = await self.redis.hgetall(_key("job", job_id))
        return self._record(job_id, raw) if raw else None

    async def field(self, job_id: str, name: str):
        value = await self.redis.hget(_key("job", job_id), name)
        return None if value is None else json.loads(value)

    async def owner(self, job_id: str) -> str | None:
        """The worker attempt that holds the running job (a plain string, unlike the JSON fields)."""
        value = await self.redis.hget(_key("job", job_id), "owner")
        return None if value is None else value.decode()

    async def blob(self, job_id: str, kind: str) -> bytes | None:
        return await self.redis.get(_key(kind, job_id))

    async def counts(self) -> dict[str, int]:
        cutoff = time.time() - RECORD_LIFETIMES * self.retention
        async with self.redis.pipeline(transaction=False) as pipe:
            finished = [s for s in JobStatus if s.finished]
            for state in finished:
                pipe.zremrangebyscore(_done(state), "-inf", cutoff)  # their records have expired
            pipe.scard(_QUEUED)
            pipe.scard(_RUNNING)
            for state in finished:
                pipe.zcard(_done(state))
            answers = (await pipe.execute())[len(finished):]
        counts = {"queued": answers[0], "running": answers[1]}
        counts.update({state.value: n for state, n in zip(finished, answers[2:])})
        return {state: n for state, n in counts.items() if n}

    async def queued_ids(self) -> list[str]:
        return [m.decode() for m in await self.redis.smembers(_QUEUED)]

    async def running_ids(self) -> list[str]:
        return [m.decode() for m in await self.redis.smembers(_RUNNING)]

    # ---- writing ------------------------------------------------------------------------------------------

    async def insert(self, submission: Submission, queue_size: int,
                     client_max_queued: int = NO_LIMIT) -> SubmitOutcome:
        """Queue a job with its input; an Idempotency-Key replay returns the existing job instead. Raises
        IdempotencyConflict, QueueFull, or ClientLimit when the submission's client has ``client_max_queued``
        waiting. A created job still has to be handed to arq."""
        job_id = str(uuid.uuid4())
        record = JobRecord(id=job_id, status=JobStatus.queued, params=submission.params, width=submission.width,
                           height=submission.height, input_bytes=len(submission.image),
                           input_format=submission.image_format, created_at=time.time(), client=submission.client)
        pairs = _pairs(record, fingerprint=submission.fingerprint, idempotency_key=submission.idempotency_key)
        client = "" if submission.client is None else json.dumps(submission.client)
        idem = "" if submission.idempotency_key is None else _key("idem", submission.idempotency_key)
        outcome, value = await self._submit(keys=[_QUEUED, idem, _key("job", job_id), _key("input", job_id)],
                                            args=[job_id, queue_size, submission.image, client, client_max_queued,
                                                  *pairs])
        outcome, value = outcome.decode(), value.decode()
        if outcome == "full":
            raise QueueFull(int(value))
        if outcome == "client_limit":
            raise ClientLimit(int(value))
        if outcome == "existing":
            existing = await self.get(value)
            if existing is None or await self.field(value, "fingerprint") != submission.fingerprint:
                raise IdempotencyConflict()
            return SubmitOutcome(existing, created=False)
        return SubmitOutcome(record, created=True)

    async def claim(self, job_id: str, owner: str, attempt: int,
                    client_max_running: int = NO_LIMIT) -> JobStatus | None:
        """Mark the job running under ``owner``; returns its status before (None: no such job). Raises
        ClientBusy, changing nothing, while the job's client has ``client_max_running`` jobs running."""
        before = await self._claim(keys=[_key("job", job_id), _QUEUED, _RUNNING],
                                   args=[job_id, owner, json.dumps(time.time()), attempt, client_max_running])
        if before == b"busy":
            raise ClientBusy(job_id)
        return JobStatus(json.loads(before)) if before else None

    async def uncount_start(self, retry_key: str) -> None:
        """Take back arq's count of a start that ran nothing (the job waits for its client's running limit)."""
        await self._uncount(keys=[retry_key])

    async def update_progress(self, job_id: str, owner: str, lease_key: str, lease_seconds: float,
                              iteration: int, total: int | None, psnr: float | None) -> int:
        """Store the progress, renew the lease; 1 go on, 0 canceled, -1 this attempt lost the job."""
        return await self._progress(keys=[_key("job", job_id), lease_key],
                                    args=[owner, iteration, json.dumps(total), json.dumps(psnr),
                                          int(lease_seconds * 1000)])

    async def finish(self, job_id: str, status: JobStatus, owner: str, *, result: bytes = b"", **values) -> bool:
        """End the job ``owner`` holds as ``status`` with the given record fields; False when it does not
        hold it (another attempt took over, or it ended already): nothing is written then."""
        keys, args = self._finish_args(job_id, status, result, values)
        return bool(await self._finish_owned(keys=keys, args=[*args, owner]))

    async def request_cancel(self, job_id: str) -> JobStatus | None:
        """Cancel a queued job now, flag a running one; returns the status before (None: no such job)."""
        keys, args = self._finish_args(job_id, JobStatus.canceled, b"", {
            "cancel_requested": True, "error_code": "canceled", "error_message": "canceled before it started"})
        before = await self._cancel(keys=keys, args=args)
        return JobStatus(json.loads(before)) if before else None

    async def requeue(self, job_id: str, owner: str, retry_key: str) -> bool:
        return bool(await self._requeue(keys=[_key("job", job_id), _RUNNING, _QUEUED, retry_key],
                                        args=[job_id, owner]))

    def _finish_args(self, job_id: str, status: JobStatus, result: bytes, values: dict) -> tuple[list, list]:
        keys = [_key("job", job_id), _QUEUED, _RUNNING, _done(status), _key("input", job_id), _key("result", job_id)]
        retention_ms = int(self.retention * 1000)
        args = [job_id, json.dumps(time.time()), retention_ms, RECORD_LIFETIMES * retention_ms, result,
                *_flatten({"status": status.value, **values})]
        return keys, args

    # ---- workers ------------------------------------------------------------------------------------------

    async def heartbeat(self, name: str, info: dict) -> None:
        await self.redis.hset(_WORKERS, name, json.dumps({**info, "seen_at": time.time()}))

    async def forget_worker(self, name: str) -> None:
        await self.redis.hdel(_WORKERS, name)

    async def worker_beats(self) -> dict[str, dict]:
        return {k.decode(): json.loads(v) for k, v in (await self.redis.hgetall(_WORKERS)).items()}

    async def record_encode_seconds(self, seconds: float) -> None:
        await self.redis.set(_MEAN, json.dumps(updated_mean(await self.mean_encode_seconds(), seconds)))

    async def mean_encode_seconds(self) -> float | None:
        value = await self.redis.get(_MEAN)
        return None if value is None else float(value)


def _flatten(values: dict) -> list:
    return [part for name, value in values.items() for part in (name, json.dumps(value))]


def _pairs(record: JobRecord, **extra) -> list:
    values = {name: getattr(record, name) for name in _RECORD_FIELDS}
    values["status"] = record.status.value
    values["params"] = client_params(record.params)
    return _flatten({**values, **extra})
