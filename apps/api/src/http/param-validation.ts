import { parseDateParam } from './api-date';
import { ApiError } from './api-error';
import type { ApiParams } from './api-params';
import type { ApiRole, ParamSpec } from './command-definition';
import { echo } from './safe-text';

/**
 * Turns the string parameters of a request into the typed values a command declared, with CloudStack's
 * answers for what is wrong: 431 naming the parameter, 531 for an Admin-only parameter sent by a User.
 * Parameters a command does not declare are ignored, as CloudStack does (they were still signed).
 */

export const DEFAULT_MAX_LENGTH = 255;
const INT32 = { min: -2147483648, max: 2147483647 };
const LONG = { min: Number.MIN_SAFE_INTEGER, max: Number.MAX_SAFE_INTEGER };
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const INTEGER = /^[+-]?\d+$/;
const CONTROL = /\p{Cc}/u;

/** Why a value does not fit, as the end of a sentence; thrown inside this file only. */
class Unfit {
  constructor(readonly reason: string) {}
}

function checkText(value: string, maxLength: number): string {
  if (CONTROL.test(value)) throw new Unfit('control characters are not allowed');
  const length = [...value].length;
  if (length > maxLength) throw new Unfit(`longer than ${maxLength} characters (${length})`);
  return value;
}

function toUuid(value: string): string {
  if (!UUID.test(value)) throw new Unfit('not a UUID (expected 8-4-4-4-12 hexadecimal digits)');
  return value.toLowerCase();
}

function toNumber(value: string, spec: ParamSpec, bounds: { min: number; max: number }): number {
  if (!INTEGER.test(value)) throw new Unfit('not an integer');
  const n = Number(value);
  const min = Math.max(spec.min ?? bounds.min, bounds.min);
  const max = Math.min(spec.max ?? bounds.max, bounds.max);
  if (!Number.isSafeInteger(n) || n < min || n > max) throw new Unfit(`must be between ${min} and ${max}`);
  return n === 0 ? 0 : n; // no -0
}

function toBoolean(value: string): boolean {
  // Python clients send str(True) == "True", so case does not matter; anything else is refused
  // (CloudStack's Boolean.parseBoolean would read it as false, which hides mistakes).
  const lower = value.toLowerCase();
  if (lower === 'true') return true;
  if (lower === 'false') return false;
  throw new Unfit('expected true or false');
}

function toEnum(value: string, spec: ParamSpec): string {
  const allowed = spec.enum ?? [];
  const found = allowed.find((candidate) => candidate.toLowerCase() === value.toLowerCase());
  if (found === undefined) throw new Unfit(`expected one of ${allowed.join(', ')}`);
  return found;
}

function toDate(value: string): Date {
  const d = parseDateParam(value);
  if (!d) throw new Unfit("not a date (expected yyyy-MM-dd, yyyy-MM-dd HH:mm:ss or yyyy-MM-dd'T'HH:mm:ssZ)");
  return d;
}

function toList(value: string, spec: ParamSpec): string[] {
  const items = value
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item !== '');
  return items.map((item, i) => {
    try {
      return spec.itemType === 'uuid' ? toUuid(item) : checkText(item, spec.maxLength ?? DEFAULT_MAX_LENGTH);
    } catch (e) {
      if (e instanceof Unfit) throw new Unfit(`item ${i + 1} ("${echo(item)}"): ${e.reason}`);
      throw e;
    }
  });
}

function convertScalar(value: string, spec: ParamSpec): unknown {
  switch (spec.type) {
    case 'string':
      return checkText(value, spec.maxLength ?? DEFAULT_MAX_LENGTH);
    case 'uuid':
      return toUuid(value);
    case 'boolean':
      return toBoolean(value);
    case 'integer':
      return toNumber(value, spec, INT32);
    case 'long':
      return toNumber(value, spec, LONG);
    case 'date':
      return toDate(value);
    case 'list':
      return toList(value, spec);
    case 'enum':
      return toEnum(value, spec);
    case 'map':
      throw new Unfit(`expected the form ${spec.name}[0].key=value`);
  }
}

function convertMap(entries: Record<string, string>[], spec: ParamSpec): Record<string, string>[] {
  const maxLength = spec.maxLength ?? DEFAULT_MAX_LENGTH;
  return entries.map((entry, i) => {
    const copy: Record<string, string> = {};
    for (const [key, value] of Object.entries(entry)) {
      try {
        copy[checkText(key, DEFAULT_MAX_LENGTH)] = checkText(value, maxLength);
      } catch (e) {
        if (e instanceof Unfit) throw new Unfit(`entry ${i} key "${echo(key)}": ${e.reason}`);
        throw e;
      }
    }
    return copy;
  });
}

const commandLabel = (commandName: string) => commandName.toLowerCase();

export function missingParameter(commandName: string, paramName: string): ApiError {
  return ApiError.paramError(`Unable to execute API command ${commandLabel(commandName)} due to missing parameter ${paramName}`);
}

export function invalidParameter(commandName: string, paramName: string, shownValue: string, reason: string): ApiError {
  return ApiError.paramError(
    `Unable to execute API command ${commandLabel(commandName)} due to invalid value. ` +
      `Invalid parameter ${paramName} value="${echo(shownValue)}": ${reason}`,
  );
}

export function adminOnlyParameter(commandName: string, paramName: string): ApiError {
  return ApiError.permissionDenied(
    `Unable to execute API command ${commandLabel(commandName)}: parameter ${paramName} may only be given by an Admin`,
  );
}

/**
 * The typed parameters of `specs` found in `params`. An empty value counts as absent (CloudStack
 * clients send `name=` for "not set"). Throws ApiError 431/531 for the first problem.
 */
export function validateParams(
  params: ApiParams,
  commandName: string,
  specs: readonly ParamSpec[],
  role: ApiRole,
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const spec of specs) {
    const key = spec.name.toLowerCase();
    const scalar = params.get(key);
    const mapEntries = spec.type === 'map' ? params.maps.get(key) : undefined;
    const present = (scalar !== undefined && scalar !== '') || (mapEntries !== undefined && mapEntries.length > 0);

    if (!present) {
      if (spec.required) throw missingParameter(commandName, spec.name);
      if (spec.default !== undefined) out[spec.name] = spec.default;
      continue;
    }
    if (spec.adminOnly && role !== 'Admin') throw adminOnlyParameter(commandName, spec.name);

    // A parameter that may carry a secret (a passphrase, credentials in mount options) is never echoed.
    const shown = spec.sensitive ? '(not shown)' : (scalar ?? `${spec.name}[0]...`);
    try {
      const value = mapEntries && mapEntries.length > 0 ? convertMap(mapEntries, spec) : convertScalar(scalar as string, spec);
      const complaint = spec.check?.(value) ?? null;
      if (complaint !== null) throw new Unfit(complaint);
      out[spec.name] = value;
    } catch (e) {
      if (e instanceof Unfit) throw invalidParameter(commandName, spec.name, shown, e.reason);
      throw e;
    }
  }
  return out;
}
