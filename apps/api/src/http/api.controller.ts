import { All, Controller, Req, Res } from '@nestjs/common';
import type { Request, Response } from 'express';
import { ApiRequestHandler } from './api-request-handler';
import { JSON_CONTENT_TYPE } from './api-response';
import { readRequestBody } from './read-request-body';

/**
 * `/client/api`, CloudStack's endpoint. All methods land here so that anything but GET and POST gets
 * CloudStack's 405 in a JSON envelope instead of Express's HTML 404. The answer is written by hand:
 * the status is CloudStack's error code (530, 531, ... are not HTTP codes Nest would pass through) and
 * no Nest exception filter may reshape the body.
 */
@Controller('client')
export class ApiController {
  constructor(private readonly handler: ApiRequestHandler) {}

  @All('api')
  async api(@Req() req: Request, @Res() res: Response): Promise<void> {
    const answer = await this.handler.handle({
      method: req.method,
      url: req.originalUrl ?? req.url,
      contentType: req.headers['content-type'],
      readBody: () => readRequestBody(req),
    });
    const body = Buffer.from(answer.json, 'utf8');
    res.status(answer.status);
    res.setHeader('Content-Type', JSON_CONTENT_TYPE);
    res.setHeader('Content-Length', body.length);
    res.setHeader('Cache-Control', 'no-store');
    res.setHeader('X-Content-Type-Options', 'nosniff');
    res.setHeader('X-Request-Id', answer.requestId);
    if (answer.status === 405) res.setHeader('Allow', 'GET, POST');
    // A body we did not read (refused as too large, or never looked at) would otherwise be parsed as the
    // next request on a kept-alive connection; closing is the simple, safe answer.
    if (!req.complete) res.setHeader('Connection', 'close');
    res.end(body);
  }
}
