// The Lua scripts of the Redis store. Each runs atomically inside Redis, so a check and what it takes
// cannot interleave with another replica's (no read-then-write race), and each uses Redis's own
// clock (TIME), so the replicas' clocks do not have to agree. The arithmetic is token-bucket.ts's.
// Keys of one caller share a hash tag (`{caller}`), so the scripts also run on Redis Cluster.
//
// A check carries the moment its caller stops waiting for it, on Redis's clock (redis-store.ts
// learns that clock from the scripts' replies). A Redis that was frozen or swamped runs the checks
// waiting on its socket when it catches up; one that runs after its deadline takes nothing, because
// its call was already refused or let in unchecked.

/** Shared by the scripts: `now` in milliseconds, and a bucket's level at it (full when never written). */
const PRELUDE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function level(key, cap)
  local v = redis.call('HMGET', key, 'level', 'at')
  if not v[1] then return cap end
  return math.min(cap, tonumber(v[1]) + (now - tonumber(v[2])) * cap / 60000)
end
local function ms_until(lvl, need, cap)
  if lvl >= need then return 0 end
  return math.ceil((need - lvl) * 60000 / cap)
end
`;

/**
 * KEYS: streams (sorted set: lease → expiry), requests bucket, tokens bucket.
 * ARGV: lease id, streams limit, rpm, tpm (0: no such limit), lease TTL in ms, deadline (Redis's
 * clock, ms; 0: none).
 * Returns {'ok', 0, 0, now}, {limit, retry after ms, streams open, now}, or {'late', ms past the
 * deadline, 0, now} having taken nothing. `now` is Redis's clock, for redis-store.ts to keep.
 */
export const ADMIT = `${PRELUDE}
local lease, streams, rpm, tpm, ttl, deadline = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
-- The caller gave up on this check (refused the call, or let it in unchecked): take nothing.
if deadline > 0 and now > deadline then return {'late', now - deadline, 0, now} end
if streams > 0 then
  -- Leases not refreshed in time belong to a replica that died: they no longer count.
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
  local open = redis.call('ZCARD', KEYS[1])
  if open >= streams then return {'streams', 1000, open, now} end
end
local requests = 0
if rpm > 0 then
  requests = level(KEYS[2], rpm)
  if requests < 1 then return {'rpm', ms_until(requests, 1, rpm), 0, now} end
end
if tpm > 0 then
  local tokens = level(KEYS[3], tpm)
  if tokens < 1 then return {'tpm', ms_until(tokens, 1, tpm), 0, now} end
end
if streams > 0 then
  redis.call('ZADD', KEYS[1], now + ttl, lease)
  redis.call('PEXPIRE', KEYS[1], ttl)
end
if rpm > 0 then
  redis.call('HSET', KEYS[2], 'level', tostring(requests - 1), 'at', now)
  -- Full again after a minute: then the key may go.
  redis.call('PEXPIRE', KEYS[2], 60000)
end
return {'ok', 0, 0, now}
`;

/**
 * KEYS: streams, requests bucket. ARGV: lease id, rpm (0: none).
 * Gives back what an admission that answered 'ok' took: its lease, and its request (the bucket
 * refilled by one, never past full). For an 'ok' that came after its caller stopped waiting (the
 * script ran in time, its answer did not arrive in time), so the call keeps nothing.
 */
export const UNDO = `${PRELUDE}
local lease, rpm = ARGV[1], tonumber(ARGV[2])
redis.call('ZREM', KEYS[1], lease)
if rpm > 0 then
  local requests = level(KEYS[2], rpm) + 1
  if requests >= rpm then
    redis.call('DEL', KEYS[2])
  else
    redis.call('HSET', KEYS[2], 'level', tostring(requests), 'at', now)
    redis.call('PEXPIRE', KEYS[2], 60000)
  end
end
return 1
`;

/**
 * KEYS: streams. ARGV: lease TTL in ms, then the lease ids this replica holds for the caller.
 * Puts each lease back at a full TTL, and back in the set if it had expired meanwhile (Redis was
 * unreachable, or restarted empty): the stream is still open, so it counts.
 */
export const REFRESH = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], now + ttl, ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], ttl)
return #ARGV - 1
`;

/**
 * KEYS: tokens bucket, the day's usage hash. ARGV: tpm (0: none), model, prompt tokens, completion
 * tokens, 1 when estimated, seconds to keep the day's usage.
 */
export const CHARGE = `${PRELUDE}
local tpm, model, prompt, completion, estimated, keep = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5] == '1', tonumber(ARGV[6])
local total = prompt + completion
if tpm > 0 and total > 0 then
  local left = level(KEYS[1], tpm) - total
  redis.call('HSET', KEYS[1], 'level', tostring(left), 'at', now)
  redis.call('PEXPIRE', KEYS[1], ms_until(left, tpm, tpm) + 1)
end
redis.call('HINCRBY', KEYS[2], 'requests:' .. model, 1)
redis.call('HINCRBY', KEYS[2], 'prompt:' .. model, prompt)
redis.call('HINCRBY', KEYS[2], 'completion:' .. model, completion)
redis.call('HINCRBY', KEYS[2], 'estimated:' .. model, estimated and total or 0)
redis.call('EXPIRE', KEYS[2], keep)
return total
`;

/**
 * KEYS: streams, requests bucket, tokens bucket, the day's usage hash. ARGV: rpm, tpm (0: none).
 * Returns {streams open, requests left, ms until full, tokens left, ms until full, usage fields...}.
 */
export const REPORT = `${PRELUDE}
local rpm, tpm = tonumber(ARGV[1]), tonumber(ARGV[2])
local open = redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
local r, rfull, k, kfull = 0, 0, 0, 0
if rpm > 0 then
  local l = level(KEYS[2], rpm)
  r, rfull = math.max(0, math.floor(l)), ms_until(l, rpm, rpm)
end
if tpm > 0 then
  local l = level(KEYS[3], tpm)
  k, kfull = math.max(0, math.floor(l)), ms_until(l, tpm, tpm)
end
return {open, r, rfull, k, kfull, redis.call('HGETALL', KEYS[4])}
`;
