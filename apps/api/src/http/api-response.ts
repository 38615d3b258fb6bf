import { formatApiDate } from './api-date';
import { ApiError } from './api-error';
import type { CommandResult } from './command-definition';
import { echo } from './safe-text';

/**
 * CloudStack's JSON envelopes (API.md, "Wire protocol"), produced in one place so every command looks
 * the same to cs, CloudMonkey and the SDKs.
 */

export { formatApiDate };

export const JSON_CONTENT_TYPE = 'application/json; charset=UTF-8';

/** A rendered answer: HTTP status and the whole JSON document. */
export interface ApiAnswer {
  status: number;
  body: Record<string, unknown>;
}

/** `listBackups` -> `listbackupsresponse`; errors before a command is known go under `errorresponse`. */
export function envelopeName(commandName?: string): string {
  return commandName ? `${commandName.toLowerCase()}response` : 'errorresponse';
}

/**
 * What goes on the wire for a value: Dates in CloudStack's format, no null fields (CloudStack's Gson
 * leaves them out, and clients test for presence), bigint as a number when it is exact.
 */
export function toWireValue(value: unknown): unknown {
  if (value instanceof Date) return formatApiDate(value);
  if (typeof value === 'bigint') return Number.isSafeInteger(Number(value)) ? Number(value) : value.toString();
  if (Array.isArray(value)) return value.map((item) => (item === undefined ? null : toWireValue(item)));
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [key, field] of Object.entries(value as Record<string, unknown>)) {
      if (field === null || field === undefined || typeof field === 'function') continue;
      out[key] = toWireValue(field);
    }
    return out;
  }
  return value;
}

function listBody(name: string, items: readonly object[], count: number): Record<string, unknown> {
  // As CloudStack's serializer: no count when it is 0, no array when the page is empty.
  const body: Record<string, unknown> = {};
  if (count > 0) body.count = count;
  if (items.length > 0) {
    if (count <= 0) body.count = items.length;
    body[name] = items.map((item) => toWireValue(item));
  }
  return body;
}

function resultBody(result: CommandResult): Record<string, unknown> {
  switch (result.kind) {
    case 'object':
      return { [result.name]: toWireValue(result.object) };
    case 'list':
      return listBody(result.name, result.items, result.count);
    case 'success':
      return result.displaytext === undefined ? { success: true } : { success: true, displaytext: result.displaytext };
    case 'async':
      return result.id === undefined ? { jobid: result.jobid } : { id: result.id, jobid: result.jobid };
    case 'raw':
      return toWireValue(result.body) as Record<string, unknown>;
    default:
      throw new Error(`unknown CommandResult kind ${JSON.stringify((result as { kind?: unknown }).kind)}`);
  }
}

export function renderResult(commandName: string, result: CommandResult): ApiAnswer {
  return { status: 200, body: { [envelopeName(commandName)]: resultBody(result) } };
}

export function renderError(error: ApiError, commandName?: string): ApiAnswer {
  return {
    status: error.errorcode,
    body: {
      [envelopeName(commandName)]: {
        errorcode: error.errorcode,
        cserrorcode: error.cserrorcode,
        errortext: error.errortext,
      },
    },
  };
}

/** strata answers JSON only; CloudStack's default (no `response`) is XML, but JSON is what clients parse. */
export function checkResponseFormat(response: string | undefined): void {
  if (response === undefined || response === '' || response.toLowerCase() === 'json') return;
  throw ApiError.unsupported(
    response.toLowerCase() === 'xml'
      ? 'strata answers in JSON only: response=xml is not supported, send response=json'
      : `unknown response format "${echo(response)}": strata answers in JSON only, send response=json`,
  );
}
