"""The run fence of the hot copy: a Redis script that writes an order's record only for its current run.

The run's epoch travels inside the order's own record (``{"runEpoch":N,...}`` at the front of its
JSON, ignored when the order is read), so fencing adds no key that could outlive the order. A write
from an older run than the record's is refused; a terminal write also drops the order from the
active set and its account's open orders, in the same script, so a refused one changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

from engine.lease import UNFENCED

FENCED_WRITE = """
local current = redis.call('GET', KEYS[1])
local epoch = tonumber(ARGV[2])
if current and epoch >= 0 then
  local held = tonumber(string.match(current, '^{"runEpoch":(%d+),') or '0')
  if held > epoch then
    return 0
  end
  local status = string.match(current, '"status":"(%a+)"')
  if ARGV[3] ~= '1' and status and string.find(ARGV[6], ',' .. status .. ',', 1, true) then
    return 0
  end
end
if ARGV[3] == '1' then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[5]))
  redis.call('SREM', KEYS[2], ARGV[4])
  local entry = redis.call('HGET', KEYS[3], ARGV[4])
  if entry then
    redis.call('HDEL', KEYS[3], ARGV[4])
    if redis.call('HLEN', KEYS[3]) == 0 then
      redis.call('DEL', KEYS[4])
    else
      redis.call('INCRBYFLOAT', KEYS[4], -(tonumber(string.match(entry, ':(.*)$')) or 0))
    end
  end
else
  redis.call('SET', KEYS[1], ARGV[1])
end
return 1
"""
"""KEYS: the order's record, the active set, the account's open orders and their USD total.
ARGV: the record, the writing run's epoch (-1: unfenced), 1 if terminal, the order id, the terminal TTL,
the terminal statuses (``,confirmed,failed,...,``). Returns 1 if written, 0 if refused: a newer run
wrote the record, or it is terminal and the write is not (a terminal state never goes back)."""


def terminal_list(statuses: Iterable[str]) -> str:
    """The terminal statuses as the script matches them."""
    return "," + ",".join(sorted(statuses)) + ","


def stamped(order_json: str, epoch: int | None) -> str:
    """The order's JSON with the run's epoch at its front (unchanged for an unfenced write)."""
    if epoch is None or epoch == UNFENCED:
        return order_json
    return f'{{"runEpoch":{int(epoch)},{order_json[1:]}' if order_json != "{}" else f'{{"runEpoch":{int(epoch)}}}'
