import { createHmac } from 'node:crypto';

/**
 * A small CloudStack-style API client for tests. It signs on its own, the way python3-cs does
 * (sorted names, encoded values, lowercased, HMAC-SHA1, Base64; signatureVersion 3 with `expires`),
 * rather than reusing the server's code, so that a signing bug on either side shows up in tests.
 */

export type ApiParamValue = string | number | boolean | readonly string[] | undefined;

export interface ApiCallOptions {
  method?: 'GET' | 'POST';
  /** skip `signatureVersion=3`/`expires` (they are also skipped when `expires` is in the params) */
  noExpiry?: boolean;
  /** send without apikey and signature */
  unsigned?: boolean;
}

export interface ApiCallResult {
  status: number;
  /** the parsed JSON answer, or the text when it was not JSON */
  body: Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
  headers: Headers;
}

/** Java's URLEncoder with `+` as `%20`: what CloudStack signs. */
export function encodeForSignature(value: string): string {
  return encodeURIComponent(value)
    // encodeURIComponent leaves ! ' ( ) ~ alone; Java encodes them (and, like Java, keeps *)
    .replace(/[!'()~]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

export function signRequest(params: Record<string, string>, secretKey: string): string {
  const text = Object.keys(params)
    .filter((name) => name.toLowerCase() !== 'signature')
    .sort()
    .map((name) => `${name}=${encodeForSignature(params[name])}`)
    .join('&')
    .toLowerCase();
  return createHmac('sha1', secretKey).update(text).digest('base64');
}

/** `yyyy-MM-dd'T'HH:mm:ss+0000` */
export function formatExpires(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, '+0000');
}

function toText(value: ApiParamValue): string | undefined {
  if (value === undefined) return undefined;
  if (Array.isArray(value)) return value.join(',');
  return String(value);
}

export class ApiClient {
  constructor(
    readonly baseUrl: string,
    readonly apiKey: string,
    readonly secretKey: string,
  ) {}

  /** The final, signed parameters of a call (useful to tamper with them in tests). */
  signedParams(command: string, params: Record<string, ApiParamValue> = {}, options: ApiCallOptions = {}): Record<string, string> {
    const out: Record<string, string> = { command, response: 'json' };
    for (const [name, value] of Object.entries(params)) {
      const text = toText(value);
      if (text !== undefined) out[name] = text;
    }
    if (options.unsigned) return out;
    out.apiKey = this.apiKey;
    if (!options.noExpiry && !Object.keys(out).some((n) => n.toLowerCase() === 'expires')) {
      out.signatureVersion = '3';
      out.expires = formatExpires(new Date(Date.now() + 10 * 60_000));
    }
    out.signature = signRequest(out, this.secretKey);
    return out;
  }

  async call(command: string, params: Record<string, ApiParamValue> = {}, options: ApiCallOptions = {}): Promise<ApiCallResult> {
    return this.send(this.signedParams(command, params, options), options.method ?? 'GET');
  }

  /** Sends parameters as they are (already signed, or deliberately broken). */
  async send(params: Record<string, string>, method: 'GET' | 'POST' = 'GET'): Promise<ApiCallResult> {
    const encoded = new URLSearchParams(params).toString();
    const url = `${this.baseUrl.replace(/\/$/, '')}/client/api`;
    const response =
      method === 'GET'
        ? await fetch(`${url}?${encoded}`)
        : await fetch(url, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: encoded });
    const text = await response.text();
    let body: Record<string, unknown>;
    try {
      body = JSON.parse(text) as Record<string, unknown>;
    } catch {
      body = { text };
    }
    return { status: response.status, body, headers: response.headers };
  }

  /**
   * Polls queryAsyncJobResult until the job is no longer pending (jobstatus != 0) and returns the
   * inner `queryasyncjobresultresponse` object; throws on an error answer or after `timeoutMs`.
   */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  async waitForJob(jobid: string, timeoutMs = 60_000, intervalMs = 200): Promise<Record<string, any>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const { status, body } = await this.call('queryAsyncJobResult', { jobid });
      const job = body.queryasyncjobresultresponse;
      if (status !== 200 || !job) throw new Error(`queryAsyncJobResult ${jobid}: HTTP ${status} ${JSON.stringify(body)}`);
      if (job.jobstatus !== 0) return job;
      if (Date.now() > deadline) throw new Error(`job ${jobid} still pending after ${timeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, intervalMs));
    }
  }
}
