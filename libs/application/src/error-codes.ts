import { DomainErrorKind } from '@strata/domain';

/** The CloudStack error code of a refusal of the domain: the API's answer, or what an async job fails with. */
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
    default:
      // A kind added to the domain later must not turn into a success or a crash.
      return 530;
  }
}
