/**
 * A command the domain refuses. `kind` says why, so the API can answer with the right code without the
 * domain knowing about HTTP: invalid/not_found -> 431 (naming `parameter` when one is to blame),
 * in_use/conflict -> 536, unavailable -> 534, unsupported -> 432.
 */
export type DomainErrorKind = 'invalid' | 'not_found' | 'in_use' | 'conflict' | 'unavailable' | 'unsupported';

export class DomainError extends Error {
  override readonly name = 'DomainError';
  constructor(
    readonly kind: DomainErrorKind,
    message: string,
    readonly parameter?: string,
  ) {
    super(message);
  }
}

export const invalid = (message: string, parameter?: string) => new DomainError('invalid', message, parameter);
export const notFound = (message: string, parameter?: string) => new DomainError('not_found', message, parameter);
export const inUse = (message: string) => new DomainError('in_use', message);
export const conflict = (message: string) => new DomainError('conflict', message);
