import { DomainErrorKind } from '@strata/domain';

/** The CloudStack error code an async job fails with when the domain refuses its command. */
export function errorCodeForDomainError(kind: DomainErrorKind): number {
  switch (kind) {
    case 'invalid':
    case 'not_found':
      return 431;
    case 'in_use':
    case 'conflict':
      return 536;
    case 'unavailable':
      return 534;
    case 'unsupported':
      return 432;
  }
}
