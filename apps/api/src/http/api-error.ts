import { errorCodeForDomainError } from '@strata/application';
import { DomainError } from '@strata/domain';

/**
 * An error answer in CloudStack's terms. `errorcode` is also the HTTP status; `cserrorcode` is
 * CloudStack's exception code (4350 for parameter errors, 9999 for everything else), which some
 * clients print.
 */
export class ApiError extends Error {
  override readonly name = 'ApiError';
  readonly cserrorcode: number;

  constructor(
    readonly errorcode: number,
    readonly errortext: string,
    cserrorcode?: number,
  ) {
    super(errortext);
    this.cserrorcode = cserrorcode ?? (errorcode === 430 || errorcode === 431 ? CS_PARAM_ERROR : CS_SERVER_ERROR);
  }

  static unauthorized(): ApiError {
    // One sentence for every authentication failure: telling the client which part was wrong would help
    // an attacker guess keys. The precise reason goes to the server log.
    return new ApiError(401, 'unable to verify user credentials and/or request signature');
  }
  static methodNotAllowed(method: string): ApiError {
    return new ApiError(405, `HTTP method ${method} is not allowed on the API; use GET or POST (form-encoded)`);
  }
  static rateLimited(text = 'too many requests, retry later'): ApiError {
    return new ApiError(429, text);
  }
  static malformed(text: string): ApiError {
    return new ApiError(430, text);
  }
  static paramError(text: string): ApiError {
    return new ApiError(431, text);
  }
  static unsupported(text: string): ApiError {
    return new ApiError(432, text);
  }
  static internal(requestId: string): ApiError {
    return new ApiError(530, `internal error, see the server log for request ${requestId}`);
  }
  static permissionDenied(text: string): ApiError {
    return new ApiError(531, text);
  }
  static insufficientCapacity(text: string): ApiError {
    return new ApiError(533, text);
  }
  static unavailable(text: string): ApiError {
    return new ApiError(534, text);
  }
  static inUse(text: string): ApiError {
    return new ApiError(536, text);
  }
}

export const CS_PARAM_ERROR = 4350;
export const CS_SERVER_ERROR = 9999;

/** Duck-typed as well as instanceof, so a DomainError from another copy of the library still maps. */
export function isDomainError(err: unknown): err is DomainError {
  if (err instanceof DomainError) return true;
  const e = err as { name?: unknown; kind?: unknown; message?: unknown } | null;
  return !!e && typeof e === 'object' && e.name === 'DomainError' && typeof e.kind === 'string' && typeof e.message === 'string';
}

/**
 * The answer for a refusal of the domain (see libs/domain/src/domain-error.ts): the code async jobs fail
 * with too (errorCodeForDomainError), and for a parameter the sentence CloudStack gives.
 */
export function apiErrorFromDomain(err: DomainError, commandName?: string): ApiError {
  const code = errorCodeForDomainError(err.kind);
  if (code === 431 && err.parameter) {
    const prefix = commandName ? `Unable to execute API command ${commandName.toLowerCase()} due to invalid value. ` : '';
    return ApiError.paramError(`${prefix}Invalid parameter ${err.parameter}: ${err.message}`);
  }
  return new ApiError(code, err.message);
}
