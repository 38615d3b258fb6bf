import type { Server } from 'node:http';
import type { Socket } from 'node:net';
import { ApiError } from './api-error';
import { renderError, JSON_CONTENT_TYPE } from './api-response';
import { MAX_URL_BYTES } from './api-request-handler';

/**
 * Node's defaults would answer an oversized or garbled request line with a bare, body-less 431/400
 * (16 KB header limit). The API accepts 64 KB URLs, so the limit is raised, and what Node still refuses
 * is answered in CloudStack's JSON envelope so clients can show why.
 */
export const MAX_HEADER_BYTES = MAX_URL_BYTES + 32 * 1024;

function rawAnswer(socket: Socket, error: ApiError): void {
  const body = JSON.stringify(renderError(error).body);
  socket.end(
    `HTTP/1.1 ${error.errorcode} ${error.errorcode === 431 ? 'Request Header Fields Too Large' : 'Bad Request'}\r\n` +
      `Content-Type: ${JSON_CONTENT_TYPE}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

export function hardenApiHttpServer(server: Server): void {
  // Read by Node for every new connection, so setting it after creation works.
  (server as Server & { maxHeaderSize?: number }).maxHeaderSize = MAX_HEADER_BYTES;
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    if (err.code === 'ECONNRESET' || !socket.writable) {
      socket.destroy();
      return;
    }
    if (err.code === 'HPE_HEADER_OVERFLOW') {
      rawAnswer(socket, ApiError.paramError(`request line and headers too large: strata accepts at most ${MAX_HEADER_BYTES / 1024} KB`));
    } else if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
      socket.destroy();
    } else {
      rawAnswer(socket, ApiError.malformed('malformed HTTP request (the request line must be ASCII with percent-encoded parameters)'));
    }
  });
}
