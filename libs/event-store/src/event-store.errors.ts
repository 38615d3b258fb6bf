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
