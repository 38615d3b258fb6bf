/**
 * The contract between the protocol layer (this folder) and the command implementations.
 * A command only sees validated, typed parameters and answers with a CommandResult; the protocol layer
 * owns authentication, envelopes, error codes and logging, so every command behaves the same on the wire.
 */

export type ApiRole = 'Admin' | 'User';

export interface ApiUser {
  id: string;
  name: string;
  role: ApiRole;
  apiKey: string;
  secretKey: string;
}

/**
 * How a parameter is read from its string form:
 * - string: text, at most `maxLength` (default 255) characters, no control characters
 * - uuid: 8-4-4-4-12 hex form, handed over in lowercase
 * - boolean: `true`/`false` in any case (Python clients send `True`), handed over as a boolean
 * - integer: 32-bit signed, long: a safe JavaScript integer; both handed over as numbers
 * - date: `yyyy-MM-dd`, `yyyy-MM-dd HH:mm:ss` or ISO-8601 with an offset; handed over as a Date (UTC when no offset)
 * - list: comma-separated, handed over as an array of `itemType` (default string)
 * - map: `name[0].key=value&name[0].value=...`, handed over as an array of string records
 * - enum: one of `enum`, matched case-insensitively, handed over in its canonical spelling
 */
export type ParamType = 'string' | 'uuid' | 'boolean' | 'integer' | 'long' | 'date' | 'list' | 'map' | 'enum';

export interface ParamSpec {
  name: string;
  type: ParamType;
  required?: boolean;
  description: string;
  enum?: readonly string[];
  min?: number;
  max?: number;
  maxLength?: number;
  /** may carry a secret: error answers never echo its value */
  sensitive?: boolean;
  /** a User sending this parameter gets 531 (e.g. `hostid`) */
  adminOnly?: boolean;
  /** an extra check on the converted value; returns an error sentence or null */
  check?: (value: unknown) => string | null;
  itemType?: 'uuid' | 'string';
  /** handed to the command when the parameter is absent (already in its converted form) */
  default?: string | number | boolean;
}

export interface CommandContext {
  user: ApiUser;
  now: Date;
  requestId: string;
}

/**
 * A response object: any plain object. `object` rather than `Record<string, unknown>` so that typed
 * response interfaces (which have no index signature) can be returned as they are. On the wire, Date
 * fields become `yyyy-MM-dd'T'HH:mm:ss+0000` and null/undefined fields are left out, as CloudStack does.
 */
export type ResponseObject = object;

export type CommandResult =
  | { kind: 'object'; name: string; object: ResponseObject }
  /** `count` is the total number of matches, `items` only the requested page */
  | { kind: 'list'; name: string; items: readonly ResponseObject[]; count: number }
  | { kind: 'success'; displaytext?: string }
  | { kind: 'async'; jobid: string; id?: string }
  /** the body inside the envelope as is (queryAsyncJobResult) */
  | { kind: 'raw'; body: ResponseObject };

/**
 * One API command. For commands named `list*` the protocol layer adds `keyword` (string), `page`
 * (number, default 1) and `pagesize` (number 1..500, default 500) to `params` unless the command
 * declares them itself.
 */
export interface CommandDefinition {
  name: string;
  description: string;
  isAsync: boolean;
  adminOnly: boolean;
  params: ParamSpec[];
  /** the object name in the answer (`backup`, `zone`, ...) as listApis shows it */
  responseObject: string;
  handle(params: Record<string, unknown>, ctx: CommandContext): Promise<CommandResult>;
}

export interface ApiUserDirectory {
  findByApiKey(apiKey: string): Promise<ApiUser | null>;
}

/** What a `list*` handler finds in its params besides its own. */
export interface PagingParams {
  page: number;
  pagesize: number;
  keyword?: string;
}
