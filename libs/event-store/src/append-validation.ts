import { InvalidAppendError } from './event-store.errors';
import type { ExpectedRevision, NewEvent, ReadStreamOptions } from './event-store.port';
import { assertStreamName } from './stream-name';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Checks an append before it reaches a store, the same way for both adapters, and returns the events with
 * lower-case ids: both stores normalise UUIDs, and idempotency compares ids as the store returns them.
 */
export function validateAppend(streamId: string, events: NewEvent[], expected: ExpectedRevision): NewEvent[] {
  assertStreamName(streamId);
  if (!Array.isArray(events) || events.length === 0) throw new InvalidAppendError(`append to ${streamId}: no events`);
  if (!isExpectedRevision(expected)) throw new InvalidAppendError(`append to ${streamId}: invalid expected revision ${String(expected)}`);
  const seen = new Set<string>();
  return events.map((event) => {
    if (typeof event.id !== 'string' || !UUID.test(event.id)) {
      throw new InvalidAppendError(`append to ${streamId}: event id "${String(event.id)}" is not a UUID`);
    }
    if (typeof event.type !== 'string' || event.type.length === 0 || event.type.startsWith('$')) {
      throw new InvalidAppendError(`append to ${streamId}: invalid event type "${String(event.type)}"`);
    }
    const id = event.id.toLowerCase();
    if (seen.has(id)) throw new InvalidAppendError(`append to ${streamId}: event id ${id} appears twice`);
    seen.add(id);
    return { ...event, id };
  });
}

export function isExpectedRevision(expected: unknown): expected is ExpectedRevision {
  return expected === 'any' || expected === 'no_stream' || expected === 'stream_exists' || isRevision(expected);
}

export function normaliseReadStreamOptions(options: ReadStreamOptions = {}): { fromRevision: number; maxCount: number | null } {
  const fromRevision = options.fromRevision ?? 0;
  const maxCount = options.maxCount ?? null;
  if (!isRevision(fromRevision)) throw new RangeError(`fromRevision must be a non-negative integer, got ${fromRevision}`);
  if (maxCount !== null && !isRevision(maxCount)) throw new RangeError(`maxCount must be a non-negative integer, got ${maxCount}`);
  return { fromRevision, maxCount };
}

function isRevision(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}
