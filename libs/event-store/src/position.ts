import { InvalidCheckpointError } from './event-store.errors';
import type { Checkpoint } from './event-store.port';

/**
 * Both adapters encode a position as two unsigned integers "<major>:<minor>", compared major first:
 * PostgreSQL (transaction id, global position), EventStoreDB (commit, prepare). Compared as BigInt
 * because transaction ids and log positions do not fit a double forever.
 */
const FORMAT = /^(\d{1,20}):(\d{1,20})$/;

export interface TwoPartPosition {
  major: bigint;
  minor: bigint;
}

export function encodePosition(major: bigint | string, minor: bigint | string): Checkpoint {
  return `${major}:${minor}`;
}

export function decodePosition(checkpoint: Checkpoint): TwoPartPosition {
  const match = FORMAT.exec(checkpoint);
  if (!match) throw new InvalidCheckpointError(checkpoint);
  return { major: BigInt(match[1]), minor: BigInt(match[2]) };
}

export function comparePositions(a: Checkpoint, b: Checkpoint): number {
  const pa = decodePosition(a);
  const pb = decodePosition(b);
  if (pa.major !== pb.major) return pa.major < pb.major ? -1 : 1;
  if (pa.minor !== pb.minor) return pa.minor < pb.minor ? -1 : 1;
  return 0;
}
