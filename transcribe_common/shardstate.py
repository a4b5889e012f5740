"""The live state of a job split into shards: which shard runs where, what is done, who joins.

One hash per attempt of the job (``keys.shards``), moved by Lua scripts that also check the job's
own hash: a shard of an attempt that is no longer the job's current one, or of a job that is no
longer ``started`` (cancelled, failed), is refused. So shards share the job's fencing, and at most
one worker runs a shard, and one the join, however many times their events are delivered:

- ``w<i>``: the worker running shard ``i``; ``n<i>``: how many times it was started; ``d<i>``:
  set once it is done; ``p<i>``: seconds of it transcribed, which only rise;
- ``total``, ``left`` (shards not done), ``seconds`` (audio in all shards), ``heard`` (audio
  transcribed): the job's ``progress`` is ``heard / seconds`` and never goes backwards;
- ``join``: the worker that joins the shards once ``left`` is 0.

A worker takes a shard (or the join) only from the holder it saw: none, itself, or one whose
heartbeat has expired. The job's hash carries ``shards_total`` and ``shards_done`` for its status.
"""

from __future__ import annotations

from collections.abc import Callable

import redis

from transcribe_common import keys
from transcribe_common.errors import StateUnavailable

HASH_TTL = 7 * 86400  # a shard hash outlives no job by more than this, whatever happened

# KEYS: the shard hash, the job's hash. ARGV: attempt, total, seconds, heard, seconds the hash
# lives, then done shards' indexes.
_BEGIN = (
    """
if redis.call('HGET', KEYS[2], 'attempts') ~= ARGV[1] or redis.call('HGET', KEYS[2], 'status') ~= 'started' then
  return 0
end
redis.call('DEL', KEYS[1])
local done = #ARGV - 5
redis.call('HSET', KEYS[1], 'total', ARGV[2], 'left', tonumber(ARGV[2]) - done, 'seconds', ARGV[3], 'heard', ARGV[4])
for n = 6, #ARGV do redis.call('HSET', KEYS[1], 'd' .. ARGV[n], 1) end
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('HSET', KEYS[2], 'shards_total', ARGV[2], 'shards_done', done)
"""
    + keys.lua_publish_change("KEYS[2]")
    + """return 1
"""
)

# The job is still this attempt's, and running. Shared by the scripts below.
_CURRENT = """
if redis.call('HGET', KEYS[2], 'attempts') ~= ARGV[1] or redis.call('HGET', KEYS[2], 'status') ~= 'started'
  or redis.call('EXISTS', KEYS[1]) == 0 then
  return 'ended'
end
"""

# ARGV: attempt, index, this worker, the holder it saw ("" for none), most starts.
_START = (
    _CURRENT
    + """
local i = ARGV[2]
if redis.call('HEXISTS', KEYS[1], 'd' .. i) == 1 then return 'done' end
if (redis.call('HGET', KEYS[1], 'w' .. i) or '') ~= ARGV[4] then return 'held' end
local n = redis.call('HINCRBY', KEYS[1], 'n' .. i, 1)
if n > tonumber(ARGV[5]) then return 'exhausted:' .. (n - 1) end
redis.call('HSET', KEYS[1], 'w' .. i, ARGV[3])
return 'ok:' .. n
"""
)

# A shard given back by a worker that stops (not a failure: its start is not counted). ARGV: attempt, index, worker.
_RELEASE = (
    _CURRENT
    + """
if redis.call('HGET', KEYS[1], 'w' .. ARGV[2]) ~= ARGV[3] then return 'held' end
redis.call('HDEL', KEYS[1], 'w' .. ARGV[2])
redis.call('HINCRBY', KEYS[1], 'n' .. ARGV[2], -1)
return 'ok'
"""
)

# Shard ``index`` has ``seconds`` of it transcribed: its share rises, never falls, and so does
# the job's progress (with ``updated_at`` when ``now`` is given). Shared by the scripts below.
_HEAR = (
    """
local function hear(index, seconds, now)
  local field = 'p' .. index
  local old = tonumber(redis.call('HGET', KEYS[1], field) or '0')
  local new = tonumber(seconds)
  if new <= old then return end
  redis.call('HSET', KEYS[1], field, seconds)
  local heard = tonumber(redis.call('HINCRBYFLOAT', KEYS[1], 'heard', new - old))
  local percent = math.floor(math.min(99, 100 * heard / tonumber(redis.call('HGET', KEYS[1], 'seconds'))) * 10) / 10
  if percent > tonumber(redis.call('HGET', KEYS[2], 'progress') or '0') then
    redis.call('HSET', KEYS[2], 'progress', tostring(percent))
    if now then redis.call('HSET', KEYS[2], 'updated_at', now) end
    """
    + keys.lua_publish_change("KEYS[2]")
    + """  end
end
"""
)

# ARGV: attempt, index, seconds of it transcribed, now (ISO). Raises the job's progress, never lowers it.
_PROGRESS = _CURRENT + _HEAR + "hear(ARGV[2], ARGV[3], ARGV[4])\nreturn 'ok'\n"

# ARGV: attempt, index, the shard's seconds, this worker. 'last' when no shard is left to do.
_DONE = (
    _CURRENT
    + _HEAR
    + """
local i = ARGV[2]
if redis.call('HGET', KEYS[1], 'w' .. i) ~= ARGV[4] and redis.call('HEXISTS', KEYS[1], 'd' .. i) == 0 then
  return 'held'
end
if redis.call('HEXISTS', KEYS[1], 'd' .. i) == 0 then
  redis.call('HSET', KEYS[1], 'd' .. i, 1)
  redis.call('HINCRBY', KEYS[1], 'left', -1)
  redis.call('HINCRBY', KEYS[2], 'shards_done', 1)
  hear(i, ARGV[3], nil)
  """
    + keys.lua_publish_change("KEYS[2]")
    + """end
if tonumber(redis.call('HGET', KEYS[1], 'left')) > 0 then return 'ok' end
return 'last'
"""
)

# ARGV: attempt, this worker, the holder it saw ("" for none). Takes the join once every shard is done.
_JOIN = (
    _CURRENT
    + """
if tonumber(redis.call('HGET', KEYS[1], 'left')) > 0 then return 'waiting' end
if (redis.call('HGET', KEYS[1], 'join') or '') ~= ARGV[3] then return 'held' end
redis.call('HSET', KEYS[1], 'join', ARGV[2])
return 'ok'
"""
)

# A worker died holding shard ARGV[2] (or the join): what it held is free for the next to take,
# even if a new process under its name is alive by then. ARGV: attempt, index, the dead worker.
_ABANDON = (
    _CURRENT
    + """
if redis.call('HGET', KEYS[1], 'w' .. ARGV[2]) == ARGV[3] then redis.call('HDEL', KEYS[1], 'w' .. ARGV[2]) end
if redis.call('HGET', KEYS[1], 'join') == ARGV[3] then redis.call('HDEL', KEYS[1], 'join') end
return 'ok'
"""
)

# Shards (ARGV: attempt, then their indexes) that nothing runs or will run: RQ lost them (a worker
# popped one and died, Redis lost its last second) or their worker gave up while Redis was away.
# Whoever held each, or the join, holds it no more; a holder's start is given back (not a death).
_FREE = (
    _CURRENT
    + """
for n = 2, #ARGV do
  local i = ARGV[n]
  if redis.call('HEXISTS', KEYS[1], 'd' .. i) == 0 and redis.call('HDEL', KEYS[1], 'w' .. i) == 1 then
    redis.call('HINCRBY', KEYS[1], 'n' .. i, -1)
  end
end
if tonumber(redis.call('HGET', KEYS[1], 'left')) == 0 then redis.call('HDEL', KEYS[1], 'join') end
return 'ok'
"""
)

# The job is ended by this attempt's shards once (a failure): ARGV: attempt, this worker.
_END = (
    _CURRENT
    + """
if redis.call('HSETNX', KEYS[1], 'ended', ARGV[2]) == 1 then return 'ok' end
return 'held'
"""
)

Alive = Callable[[str], bool]


class ShardStates:
    """The shard gates of one attempt of one job."""

    def __init__(self, conn: redis.Redis, job_id: str, attempt: int) -> None:
        self.conn, self.job_id, self.attempt = conn, job_id, attempt
        self.keys = [keys.shards(job_id, attempt), keys.job(job_id)]

    def _call(self, script: str, *args: str | int) -> str:
        try:
            return str(keys.text(self.conn.register_script(script)(keys=self.keys, args=[self.attempt, *args])))
        except redis.RedisError as exc:
            raise StateUnavailable(f"redis: {exc}") from exc

    def begin(self, total: int, seconds: float, done: dict[int, float]) -> bool:
        """Record the plan: ``total`` shards, ``seconds`` of audio in all, the silent shards
        (index -> seconds) done already. False if the attempt is no longer the job's."""
        heard = sum(done.values())
        return self._call(_BEGIN, total, f"{seconds:.3f}", f"{heard:.3f}", HASH_TTL, *done) == "1"

    def start(self, index: int, worker: str, alive: Alive, most: int) -> str:
        """Take shard ``index`` for ``worker``: ``ok:<its starts so far>``; ``done``; ``held`` (a live worker runs
        it); ``ended`` (the job is not this attempt's, or not running); ``exhausted:<n>`` (it was
        started ``most`` times, its workers dying in it)."""
        holder = self._holder(f"w{index}", worker, alive)
        # Held by a live worker: asked all the same (with a holder no worker has), so that a shard
        # done already says so.
        return self._call(_START, index, worker, "\x00live" if holder is None else holder, most)

    def release(self, index: int, worker: str) -> None:
        self._call(_RELEASE, index, worker)

    def end_once(self, worker: str) -> bool:
        """Whether ``worker`` is the one that ends the job (fails it); once per attempt."""
        return self._call(_END, worker) == "ok"

    def abandon(self, index: int, worker: str) -> None:
        """``worker`` died running shard ``index`` (the reaper saw it): its shard and its join are free."""
        self._call(_ABANDON, index, worker)

    def progress(self, index: int, seconds: float, now: str) -> str:
        return self._call(_PROGRESS, index, f"{seconds:.3f}", now)

    def done(self, index: int, seconds: float, worker: str) -> str:
        """Shard ``index`` is transcribed: ``last`` when it was the last one left, else ``ok``
        (or ``ended``, ``held``)."""
        return self._call(_DONE, index, f"{seconds:.3f}", worker)

    def take_join(self, worker: str, alive: Alive) -> bool:
        """Whether ``worker`` joins the shards now: every shard is done, and no live worker joins."""
        holder = self._holder("join", worker, alive)
        return holder is not None and self._call(_JOIN, worker, holder) == "ok"

    def _holder(self, field: str, worker: str, alive: Alive) -> str | None:
        """Whom a take must replace: "" (nobody), the worker itself (its own past, before a
        restart under its name), or a dead worker. None if a live worker holds it."""
        try:
            holder = keys.text(self.conn.hget(self.keys[0], field) or b"")
        except redis.RedisError as exc:
            raise StateUnavailable(f"redis: {exc}") from exc
        return holder if holder in ("", worker) or not alive(holder) else None

    def pending(self) -> list[int] | None:
        """The shards not done yet (all done: the join is what is left); None when the attempt has
        no gates (it ended, or never split)."""
        try:
            gates = {keys.text(k): v for k, v in self.conn.hgetall(self.keys[0]).items()}
        except redis.RedisError as exc:
            raise StateUnavailable(f"redis: {exc}") from exc
        if "total" not in gates:
            return None
        return [i for i in range(int(gates["total"])) if f"d{i}" not in gates]

    def free(self, indexes: list[int]) -> bool:
        """Free these shards, and the join, of whatever holds them: RQ will run none of them, so
        nothing does (``_FREE``). False if the attempt is no longer the job's, running."""
        return self._call(_FREE, *indexes) == "ok"

    def forget(self) -> None:
        self.conn.delete(self.keys[0])
