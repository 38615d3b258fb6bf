import { randomBytes, randomUUID } from 'node:crypto';
import { Inject, Injectable, Logger } from '@nestjs/common';
import { ApiError, apiErrorFromDomain, isDomainError } from './api-error';
import { API_USER_DIRECTORY } from './api-http.tokens';
import { type ApiParams, decodeFormComponent, parseApiParams } from './api-params';
import { type ApiAnswer, checkResponseFormat, renderError, renderResult } from './api-response';
import type { ApiUser, ApiUserDirectory, CommandResult } from './command-definition';
import { CommandRegistry, type RegisteredCommand } from './command-registry';
import { validateParams } from './param-validation';
import { verifyRequestSignature } from './request-signature';
import { echo } from './safe-text';

/** Longest URL (path and query) read; longer ones are refused with 431 before any parsing. */
export const MAX_URL_BYTES = 64 * 1024;

/** What the handler needs of an HTTP request; the controller adapts Express's request to it. */
export interface ApiHttpRequest {
  method: string;
  /** path and raw query string, as on the request line */
  url: string;
  contentType?: string;
  /** reads the raw body (POST only); may throw ApiError 431 when it is too large */
  readBody(): Promise<Buffer>;
}

export interface HandledRequest extends ApiAnswer {
  requestId: string;
  /** `body` serialized, ready to send */
  json: string;
}

/** What is known about a request while it goes through the pipeline, for the answer and the log line. */
interface Progress {
  requestId: string;
  commandLabel: string;
  command?: RegisteredCommand;
  user?: ApiUser;
  logNote?: string;
  /** The POST body, once read: it may name the command when the request fails. */
  body?: Buffer;
}

const FORM = /^application\/x-www-form-urlencoded\s*(;|$)/i;

/**
 * The API pipeline: parameters, response format, authentication, command lookup, validation,
 * execution, rendering. Never throws: every failure becomes a CloudStack error answer, and anything
 * unexpected a 530 whose details (stack included) only go to the server log.
 */
@Injectable()
export class ApiRequestHandler {
  private readonly logger = new Logger('ApiHttp');
  /** verified against when the apikey is unknown, so that both cases cost the same time */
  private readonly decoySecret = randomBytes(32).toString('base64');

  constructor(
    private readonly registry: CommandRegistry,
    @Inject(API_USER_DIRECTORY) private readonly users: ApiUserDirectory,
  ) {}

  async handle(request: ApiHttpRequest): Promise<HandledRequest> {
    const started = process.hrtime.bigint();
    const progress: Progress = { requestId: randomUUID(), commandLabel: '-' };
    let answer: ApiAnswer;
    let json: string;
    try {
      answer = await this.run(request, progress);
      // Inside the try: an unserializable result (a cycle, a BigInt in a raw body) is the command's bug.
      json = JSON.stringify(answer.body);
    } catch (err) {
      if (!progress.command) this.guessCommand(request.url, progress.body, progress);
      answer = this.answerForError(err, progress);
      json = JSON.stringify(answer.body);
    }
    const ms = Number((process.hrtime.bigint() - started) / 1_000_000n);
    this.logLine(request.method, progress, answer, ms);
    return { ...answer, json, requestId: progress.requestId };
  }

  private async run(request: ApiHttpRequest, progress: Progress): Promise<ApiAnswer> {
    const method = request.method.toUpperCase();
    if (method !== 'GET' && method !== 'POST') throw ApiError.methodNotAllowed(echo(request.method, 16));
    if (Buffer.byteLength(request.url, 'latin1') > MAX_URL_BYTES) {
      throw ApiError.paramError(`request URL too long: strata accepts at most ${MAX_URL_BYTES / 1024} KB; send large parameters with POST`);
    }

    const body = await this.bodyOf(request, method);
    progress.body = body;
    const params = parseApiParams(queryOf(request.url), body);
    const commandName = params.get('command');
    progress.command = commandName ? this.registry.find(commandName) : undefined;
    progress.commandLabel = progress.command?.definition.name ?? (commandName ? `?${echo(commandName, 40)}` : '-');

    checkResponseFormat(params.get('response'));
    const user = await this.authenticate(params, progress);
    progress.user = user;

    if (!commandName) throw ApiError.unsupported('no command given: send the parameter command=<API command name>');
    const command = progress.command;
    if (!command || (command.definition.adminOnly && user.role !== 'Admin')) {
      throw ApiError.unsupported(`The given command "${echo(commandName)}" does not exist or it is not available for user`);
    }

    const values = validateParams(params, command.definition.name, command.params, user.role);
    const ctx = { user, now: new Date(), requestId: progress.requestId };
    const result: CommandResult = await command.definition.handle(values, ctx);
    if (!result || typeof result !== 'object' || typeof (result as { kind?: unknown }).kind !== 'string') {
      throw new Error(`command ${command.definition.name} returned no CommandResult`);
    }
    return renderResult(command.definition.name, result);
  }

  /**
   * When a request fails before its parameters are read (405, broken encoding, duplicates), the command
   * named in the query string, if it is a real one, still gives the envelope, as in CloudStack.
   */
  private guessCommand(url: string, body: Buffer | undefined, progress: Progress): void {
    if (Buffer.byteLength(url, 'latin1') > MAX_URL_BYTES) return;
    // A POST names its command in the form body.
    const fields = [...queryOf(url).split('&'), ...(body ? body.toString('latin1').split('&') : [])];
    for (const segment of fields) {
      const eq = segment.indexOf('=');
      if (eq < 0 || segment.slice(0, eq).toLowerCase() !== 'command') continue;
      const name = decodeFormComponent(Buffer.from(segment.slice(eq + 1), 'latin1'));
      const command = name ? this.registry.find(name) : undefined;
      if (command) {
        progress.command = command;
        progress.commandLabel = command.definition.name;
      }
      return;
    }
  }

  private async bodyOf(request: ApiHttpRequest, method: string): Promise<Buffer | undefined> {
    if (method !== 'POST') return undefined;
    const body = await request.readBody();
    if (body.length === 0) return undefined;
    if (request.contentType !== undefined && !FORM.test(request.contentType)) {
      throw ApiError.malformed(
        `POST bodies must be application/x-www-form-urlencoded, not "${echo(request.contentType)}"`,
      );
    }
    return body;
  }

  private async authenticate(params: ApiParams, progress: Progress): Promise<ApiUser> {
    const apiKey = params.get('apikey');
    if (!apiKey) {
      progress.logNote = 'no apikey';
      throw ApiError.unauthorized();
    }
    const user = await this.users.findByApiKey(apiKey);
    const verdict = verifyRequestSignature(params.raw, user?.secretKey ?? this.decoySecret, new Date());
    if (!user) {
      progress.logNote = 'unknown apikey';
      throw ApiError.unauthorized();
    }
    if (!verdict.ok) {
      progress.user = user;
      progress.logNote = verdict.reason;
      throw ApiError.unauthorized();
    }
    return user;
  }

  private answerForError(err: unknown, progress: Progress): ApiAnswer {
    const commandName = progress.command?.definition.name;
    if (err instanceof ApiError) return renderError(err, commandName);
    if (isDomainError(err)) return renderError(apiErrorFromDomain(err, commandName), commandName);
    const stack = err instanceof Error ? (err.stack ?? err.message) : String(err);
    this.logger.error(`request ${progress.requestId} (${progress.commandLabel}) failed: ${stack}`);
    return renderError(ApiError.internal(progress.requestId), commandName);
  }

  private logLine(method: string, progress: Progress, answer: ApiAnswer, ms: number): void {
    // Never the parameters: they hold the apikey and signature, and values may be anything.
    const user = progress.user ? echo(progress.user.name, 40) : '-';
    const note = progress.logNote ? ` (${progress.logNote})` : '';
    const line = `${echo(method, 16)} ${progress.commandLabel} user=${user} status=${answer.status}${note} ${ms}ms req=${progress.requestId}`;
    if (answer.status >= 500) this.logger.warn(line);
    else this.logger.log(line);
  }
}

function queryOf(url: string): string {
  const q = url.indexOf('?');
  if (q < 0) return '';
  const hash = url.indexOf('#', q);
  return hash < 0 ? url.slice(q + 1) : url.slice(q + 1, hash);
}
