/** The stream was not at the revision the caller expected: someone else appended first. */
export class ConcurrencyError extends Error {
  override readonly name = 'ConcurrencyError';
  constructor(
    readonly streamId: string,
    readonly expected: string,
    readonly actual: number | 'no_stream',
  ) {
    super(`stream ${streamId} is at revision ${actual}, expected ${expected}`);
  }
}

/** Some but not all event ids of an append were already stored: the caller mixed new and old events. */
export class IdempotencyConflictError extends Error {
  override readonly name = 'IdempotencyConflictError';
  constructor(readonly streamId: string, readonly eventIds: string[]) {
    super(`stream ${streamId}: events ${eventIds.join(', ')} were already appended, the others were not`);
  }
}

export class InvalidStreamNameError extends Error {
  override readonly name = 'InvalidStreamNameError';
  constructor(readonly streamId: string) {
    super(`invalid stream name "${streamId}": expected <category>-<id> with no "-" inside the category`);
  }
}

/** A checkpoint that this adapter did not produce (checkpoints are not portable between adapters' formats). */
export class InvalidCheckpointError extends Error {
  override readonly name = 'InvalidCheckpointError';
  constructor(readonly checkpoint: string) {
    super(`invalid event store checkpoint "${checkpoint}"`);
  }
}

/** An append the port does not accept (no events, an id that is not a UUID, the same id twice). */
export class InvalidAppendError extends Error {
  override readonly name = 'InvalidAppendError';
}
