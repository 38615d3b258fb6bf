import {
  ANY,
  ErrorType,
  NO_STREAM,
  STREAM_EXISTS,
  type AppendExpectedRevision,
  type CurrentRevision,
  type Position,
  type RecordedEvent as EsdbRecordedEvent,
} from '@eventstore/db-client';
import type { Checkpoint, ExpectedRevision, RecordedEvent } from '../event-store.port';
import { decodePosition, encodePosition } from '../position';

/** The port's revisions are numbers (a stream of 2^53 events is not a concern); the client's are BigInt. */
export function toEsdbExpectedRevision(expected: ExpectedRevision): AppendExpectedRevision {
  switch (expected) {
    case 'any':
      return ANY;
    case 'no_stream':
      return NO_STREAM;
    case 'stream_exists':
      return STREAM_EXISTS;
    default:
      return BigInt(expected);
  }
}

export function fromEsdbCurrentRevision(actual: CurrentRevision): number | 'no_stream' {
  return actual === NO_STREAM ? 'no_stream' : toRevisionNumber(actual);
}

export function toRevisionNumber(revision: bigint): number {
  const n = Number(revision);
  if (!Number.isSafeInteger(n)) throw new RangeError(`stream revision ${revision} does not fit a number`);
  return n;
}

export function toCheckpoint(position: Position): Checkpoint {
  return encodePosition(position.commit, position.prepare);
}

export function toEsdbPosition(checkpoint: Checkpoint): Position {
  const { major, minor } = decodePosition(checkpoint);
  return { commit: major, prepare: minor };
}

/** System streams and types start with `$` ($settings, $stats-..., link events `$>`, metadata `$$...`). */
export function isSystemEvent(event: { streamId: string; type: string }): boolean {
  return event.streamId.startsWith('$') || event.type.startsWith('$');
}

export function isStreamNotFound(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { type?: unknown }).type === ErrorType.STREAM_NOT_FOUND;
}

/**
 * `commitPosition` is what ResolvedEvent carries when the record itself has no position (servers before
 * 22.6 on stream reads); strata cannot order or checkpoint without one.
 */
export function fromEsdbEvent(event: EsdbRecordedEvent, commitPosition?: bigint): RecordedEvent {
  const position = event.position ?? (commitPosition !== undefined ? { commit: commitPosition, prepare: commitPosition } : undefined);
  if (!position) {
    throw new Error(`EventStoreDB returned ${event.streamId}@${event.revision} without a position; strata needs EventStoreDB 22.6 or later`);
  }
  return {
    id: event.id,
    type: event.type,
    data: event.data,
    metadata: toMetadataRecord(event.metadata),
    streamId: event.streamId,
    streamRevision: toRevisionNumber(event.revision),
    position: toCheckpoint(position),
    createdAt: event.created,
  };
}

function toMetadataRecord(metadata: unknown): Record<string, unknown> {
  if (metadata === null || typeof metadata !== 'object' || Array.isArray(metadata) || metadata instanceof Uint8Array) return {};
  return metadata as Record<string, unknown>;
}
