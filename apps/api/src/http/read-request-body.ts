import type { IncomingMessage } from 'node:http';
import { ApiError } from './api-error';

export const MAX_BODY_BYTES = 1024 * 1024;

/**
 * A body above the limit is still read (and thrown away) up to this much, so the client sees our
 * 431 instead of a connection reset in the middle of its upload; beyond it the connection is cut.
 */
const MAX_DRAIN_BYTES = 64 * 1024 * 1024;

/** True when something (a body-parser middleware) already consumed the stream. */
function alreadyConsumed(req: IncomingMessage): boolean {
  const r = req as IncomingMessage & { _body?: boolean; body?: unknown };
  return r._body === true || (r.readableEnded && r.body !== undefined);
}

/**
 * The raw body of a request, at most `limit` bytes; above that ApiError 431 once the body is drained.
 * Throws a plain Error when a body parser consumed the stream before us: that is a wiring mistake
 * (the app must be created with `bodyParser: false`), answered as 530 and logged.
 */
export function readRequestBody(req: IncomingMessage, limit = MAX_BODY_BYTES): Promise<Buffer> {
  if (alreadyConsumed(req)) {
    return Promise.reject(new Error('the request body was consumed by another body parser; create the Nest app with bodyParser: false'));
  }
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > MAX_DRAIN_BYTES) {
    // Not worth reading at all; the socket is closed after the answer (see the controller).
    return Promise.reject(tooLarge(limit));
  }
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let received = 0;
    let settled = false;
    const finish = (err: Error | null) => {
      if (settled) return;
      settled = true;
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('aborted', onAborted);
      if (err) reject(err);
      else resolve(Buffer.concat(chunks));
    };
    const onData = (chunk: Buffer) => {
      received += chunk.length;
      if (received <= limit) chunks.push(chunk);
      else if (received > MAX_DRAIN_BYTES) {
        req.pause();
        finish(tooLarge(limit));
      }
    };
    const onEnd = () => finish(received > limit ? tooLarge(limit) : null);
    const onError = (err: Error) => finish(err);
    const onAborted = () => finish(ApiError.malformed('the client aborted the request'));
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('aborted', onAborted);
  });
}

function tooLarge(limit: number): ApiError {
  return ApiError.paramError(`request body too large: strata accepts at most ${Math.floor(limit / 1024)} KB of parameters`);
}
