import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import * as net from 'node:net';
import { type INestApplication, type LoggerService, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { DomainError } from '@strata/domain';
import { ApiClient, signRequest } from '../../../../test/support/api-client';
import { ApiError } from './api-error';
import { ApiHttpModule, configureApiHttpApp, createApiHttpApp } from './api-http.module';
import type { ApiUser, CommandDefinition, PagingParams } from './command-definition';
import { StaticUserDirectory } from './static-user-directory';

/**
 * The protocol layer over real HTTP, with a few fake commands standing in for the real ones:
 * envelopes, paging, authentication, errors, limits, and a seeded fuzz run.
 */

const ADMIN: ApiUser = { id: 'u-admin', name: 'admin', role: 'Admin', apiKey: 'admin-key-Abc_123', secretKey: 'admin-secret-XyZ/+=' };
const USER: ApiUser = { id: 'u-user', name: 'alice', role: 'User', apiKey: 'user-key-Def_456', secretKey: 'user-secret-QwE/+=' };

/** Lines the app logged, to check that no secret ever reaches the log. */
class MemoryLogger implements LoggerService {
  readonly lines: string[] = [];
  log(message: unknown) {
    this.lines.push(String(message));
  }
  error(message: unknown, ...rest: unknown[]) {
    this.lines.push([message, ...rest].map(String).join(' '));
  }
  warn(message: unknown) {
    this.lines.push(String(message));
  }
  debug(message: unknown) {
    this.lines.push(String(message));
  }
  verbose(message: unknown) {
    this.lines.push(String(message));
  }
}

interface Zone {
  id: string;
  name: string;
  created: Date;
}
interface Job {
  jobid: string;
  cmd: string;
  result: Record<string, unknown>;
}

function fakeCommands() {
  const zones: Zone[] = [];
  const jobs = new Map<string, Job>();

  const createZone: CommandDefinition = {
    name: 'createZone',
    description: 'Creates a zone',
    isAsync: false,
    adminOnly: true,
    responseObject: 'zone',
    params: [
      { name: 'name', type: 'string', required: true, description: 'zone name' },
      { name: 'chainsize', type: 'integer', min: 0, max: 100, description: 'backups per chain' },
      { name: 'compressionlibrary', type: 'enum', enum: ['zstd', 'zlib'], description: 'library' },
    ],
    async handle(params, ctx) {
      const zone = { id: randomUUID(), name: params.name as string, created: ctx.now };
      zones.push(zone);
      return { kind: 'object', name: 'zone', object: { ...zone, removed: null, library: params.compressionlibrary } };
    },
  };

  const listZones: CommandDefinition = {
    name: 'listZones',
    description: 'Lists zones',
    isAsync: false,
    adminOnly: false,
    responseObject: 'zone',
    params: [
      { name: 'id', type: 'uuid', description: 'zone id' },
      { name: 'name', type: 'string', description: 'zone name' },
    ],
    async handle(params) {
      const { page, pagesize, keyword } = params as unknown as PagingParams;
      const found = zones
        .filter((z) => params.id === undefined || z.id === params.id)
        .filter((z) => params.name === undefined || z.name === params.name)
        .filter((z) => keyword === undefined || z.name.includes(keyword));
      return { kind: 'list', name: 'zone', items: found.slice((page - 1) * pagesize, page * pagesize), count: found.length };
    },
  };

  const deleteZone: CommandDefinition = {
    name: 'deleteZone',
    description: 'Deletes a zone',
    isAsync: false,
    adminOnly: true,
    responseObject: 'success',
    params: [{ name: 'id', type: 'uuid', required: true, description: 'zone id' }],
    async handle(params) {
      const i = zones.findIndex((z) => z.id === params.id);
      if (i < 0) throw new DomainError('not_found', 'no zone with this id', 'id');
      if (zones[i].name === 'busy') throw new DomainError('in_use', 'the zone still has hosts');
      zones.splice(i, 1);
      return { kind: 'success' };
    },
  };

  const createBackup: CommandDefinition = {
    name: 'createBackup',
    description: 'Backs a VM up',
    isAsync: true,
    adminOnly: false,
    responseObject: 'backup',
    params: [
      { name: 'virtualmachineid', type: 'uuid', required: true, description: 'the VM' },
      { name: 'quiescevm', type: 'boolean', default: false, description: 'quiesce' },
      { name: 'hostid', type: 'uuid', adminOnly: true, description: 'where' },
      { name: 'tags', type: 'map', description: 'tags' },
    ],
    async handle(params, ctx) {
      const jobid = randomUUID();
      const id = randomUUID();
      const backup = { id, virtualmachineid: params.virtualmachineid, quiesced: params.quiescevm, created: ctx.now, tags: params.tags };
      jobs.set(jobid, { jobid, cmd: 'createBackup', result: { backup } });
      return { kind: 'async', jobid, id };
    },
  };

  const queryAsyncJobResult: CommandDefinition = {
    name: 'queryAsyncJobResult',
    description: 'Result of an async job',
    isAsync: false,
    adminOnly: false,
    responseObject: 'asyncjobs',
    params: [{ name: 'jobid', type: 'uuid', required: true, description: 'the job' }],
    async handle(params, ctx) {
      const job = jobs.get(params.jobid as string);
      if (!job) throw new DomainError('not_found', 'no such job', 'jobid');
      return {
        kind: 'raw',
        body: { jobid: job.jobid, cmd: job.cmd, jobstatus: 1, jobresultcode: 0, jobresulttype: 'object', jobresult: job.result, created: ctx.now },
      };
    },
  };

  const explode: CommandDefinition = {
    name: 'explode',
    description: 'Fails unexpectedly',
    isAsync: false,
    adminOnly: false,
    responseObject: 'nothing',
    params: [],
    async handle() {
      throw new TypeError(`secret internals ${ADMIN.secretKey} at /srv/strata/db.ts:42`);
    },
  };

  const refuse: CommandDefinition = {
    name: 'refuseThing',
    description: 'Throws an ApiError',
    isAsync: false,
    adminOnly: false,
    responseObject: 'nothing',
    params: [],
    async handle() {
      throw ApiError.unavailable('the repository is offline');
    },
  };

  return [createZone, listZones, deleteZone, createBackup, queryAsyncJobResult, explode, refuse];
}

let app: INestApplication;
let port: number;
let baseUrl: string;
let admin: ApiClient;
let user: ApiClient;
const logger = new MemoryLogger();
const commands = fakeCommands();

beforeAll(async () => {
  app = await createApiHttpApp(commands, new StaticUserDirectory([ADMIN, USER]), { logger });
  await app.listen(0, '127.0.0.1');
  port = (app.getHttpServer().address() as AddressInfo).port;
  baseUrl = `http://127.0.0.1:${port}`;
  admin = new ApiClient(baseUrl, ADMIN.apiKey, ADMIN.secretKey);
  user = new ApiClient(baseUrl, USER.apiKey, USER.secretKey);
});

afterAll(async () => {
  await app?.close();
});

interface RawAnswer {
  status: number;
  headers: Record<string, string>;
  text: string;
}

/** One request written byte for byte on a fresh socket: no client library normalizes anything. */
function rawHttp(request: Buffer | string, timeoutMs = 20_000): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error('no answer in time'));
    }, timeoutMs);
    socket.on('connect', () => socket.end(request));
    socket.on('data', (d) => chunks.push(d));
    socket.on('error', () => undefined); // a reset after the answer arrived is fine; no answer is caught below
    socket.on('close', () => {
      clearTimeout(timer);
      const all = Buffer.concat(chunks).toString('utf8');
      const split = all.indexOf('\r\n\r\n');
      const m = /^HTTP\/1\.1 (\d{3})/.exec(all);
      if (!m || split < 0) return reject(new Error(`no HTTP answer: ${JSON.stringify(all.slice(0, 200))}`));
      const headers: Record<string, string> = {};
      for (const line of all.slice(0, split).split('\r\n').slice(1)) {
        const colon = line.indexOf(':');
        headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
      }
      resolve({ status: Number(m[1]), headers, text: all.slice(split + 4) });
    });
  });
}

function rawRequest(method: string, target: string, body?: Buffer | string, contentType = 'application/x-www-form-urlencoded') {
  const payload = body === undefined ? Buffer.alloc(0) : Buffer.from(body);
  const head =
    `${method} ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n` +
    (body === undefined ? '' : `Content-Type: ${contentType}\r\nContent-Length: ${payload.length}\r\n`) +
    '\r\n';
  return rawHttp(Buffer.concat([Buffer.from(head, 'latin1'), payload]));
}

/** A query string, signed or not, percent-encoded as a well-behaved client would. */
function query(params: Record<string, string>): string {
  return new URLSearchParams(params).toString();
}

function signedQuery(client: { apiKey: string; secretKey: string }, params: Record<string, string>): string {
  const all = { ...params, apiKey: client.apiKey, response: 'json' };
  return query({ ...all, signature: signRequest(all, client.secretKey) });
}

describe('API protocol over HTTP', () => {
  describe('envelopes', () => {
    it('answers one object under <command>response with API dates and no null fields', async () => {
      const { status, body, headers } = await admin.call('createZone', { name: 'zone one', compressionlibrary: 'ZSTD' });
      expect(status).toBe(200);
      expect(headers.get('content-type')).toBe('application/json; charset=UTF-8');
      expect(Object.keys(body)).toEqual(['createzoneresponse']);
      const zone = body.createzoneresponse.zone;
      expect(zone).toEqual({ id: expect.any(String), name: 'zone one', created: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+0000$/), library: 'zstd' });
    });

    it('pages lists with the total count; past the end only the count; nothing found is {}', async () => {
      for (let i = 2; i <= 7; i++) expect((await admin.call('createZone', { name: `zone ${i}` })).status).toBe(200);
      const page2 = await user.call('listZones', { page: 2, pagesize: 3 });
      expect(page2.status).toBe(200);
      expect(page2.body.listzonesresponse.count).toBe(7);
      expect(page2.body.listzonesresponse.zone.map((z: Zone) => z.name)).toEqual(['zone 4', 'zone 5', 'zone 6']);
      expect((await user.call('listZones', { page: 4, pagesize: 3 })).body).toEqual({ listzonesresponse: { count: 7 } });
      expect((await user.call('listZones', { name: 'nowhere' })).body).toEqual({ listzonesresponse: {} });
      const all = await user.call('listZones');
      expect(all.body.listzonesresponse.zone).toHaveLength(7);
      expect((await user.call('listZones', { keyword: 'zone 7' })).body.listzonesresponse.count).toBe(1);
    });

    it('refuses paging out of range naming the parameter', async () => {
      for (const [params, name] of [
        [{ pagesize: 501 }, 'pagesize'],
        [{ pagesize: 0 }, 'pagesize'],
        [{ page: 0 }, 'page'],
        [{ page: 'two' }, 'page'],
      ] as const) {
        const { status, body } = await user.call('listZones', params);
        expect(status).toBe(431);
        expect(body.listzonesresponse.errortext).toContain(`Invalid parameter ${name} value=`);
      }
    });

    it('answers async commands with id and jobid, and the job result through queryAsyncJobResult', async () => {
      const vm = randomUUID();
      const { status, body } = await user.call('createBackup', { virtualmachineid: vm, 'tags[0].key': 'k', 'tags[0].value': 'v' });
      expect(status).toBe(200);
      expect(body).toEqual({ createbackupresponse: { id: expect.any(String), jobid: expect.any(String) } });
      const job = await user.waitForJob(body.createbackupresponse.jobid, 5_000);
      expect(job.jobstatus).toBe(1);
      expect(job.jobresult.backup).toEqual({
        id: body.createbackupresponse.id,
        virtualmachineid: vm,
        quiesced: false,
        created: expect.stringMatching(/\+0000$/),
        tags: [{ key: 'k', value: 'v' }],
      });
    });

    it('answers success, and maps domain and API errors to their codes', async () => {
      const created = await admin.call('createZone', { name: 'busy' });
      const busy = created.body.createzoneresponse.zone.id;
      const inUse = await admin.call('deleteZone', { id: busy });
      expect(inUse.status).toBe(536);
      expect(inUse.body).toEqual({ deletezoneresponse: { errorcode: 536, cserrorcode: 9999, errortext: 'the zone still has hosts' } });

      const zone = (await admin.call('createZone', { name: 'short lived' })).body.createzoneresponse.zone.id;
      expect((await admin.call('deleteZone', { id: zone })).body).toEqual({ deletezoneresponse: { success: true } });
      const gone = await admin.call('deleteZone', { id: zone });
      expect(gone.status).toBe(431);
      expect(gone.body.deletezoneresponse.errortext).toContain('Invalid parameter id');

      const offline = await user.call('refuseThing');
      expect([offline.status, offline.body.refusethingresponse.errortext]).toEqual([534, 'the repository is offline']);
    });

    it('takes POST form bodies, and refuses other body types', async () => {
      const { status, body } = await admin.call('createZone', { name: 'posted zone ~*' }, { method: 'POST' });
      expect(status).toBe(200);
      expect(body.createzoneresponse.zone.name).toBe('posted zone ~*');

      const json = await rawRequest('POST', `/client/api?${signedQuery(ADMIN, { command: 'listZones' })}`, '{"a":1}', 'application/json');
      expect(json.status).toBe(430);
      expect(JSON.parse(json.text).listzonesresponse.errortext).toContain('application/x-www-form-urlencoded');
    });

    it('reads command names and parameter names case-insensitively', async () => {
      const { status, body } = await admin.call('CREATEZONE', { NAME: 'shouting zone' });
      expect(status).toBe(200);
      expect(body.createzoneresponse.zone.name).toBe('shouting zone');
    });

    it('lists the APIs the caller may use', async () => {
      const asUser = await user.call('listApis');
      const names = asUser.body.listapisresponse.api.map((a: { name: string }) => a.name);
      expect(names).toEqual(['createBackup', 'explode', 'listApis', 'listZones', 'queryAsyncJobResult', 'refuseThing']);
      const backup = asUser.body.listapisresponse.api.find((a: { name: string }) => a.name === 'createBackup');
      expect(backup.isasync).toBe(true);
      expect(backup.params.map((p: { name: string }) => p.name)).toEqual(['virtualmachineid', 'quiescevm', 'tags']);
      expect(backup.params[0]).toMatchObject({ name: 'virtualmachineid', type: 'uuid', required: true, description: 'the VM' });
      expect(backup.response).toEqual([{ name: 'backup' }]);

      const asAdmin = await admin.call('listApis', { name: 'listzones' });
      expect(asAdmin.body.listapisresponse.count).toBe(1);
      expect(asAdmin.body.listapisresponse.api[0].params.map((p: { name: string }) => p.name)).toEqual(['id', 'name', 'keyword', 'page', 'pagesize']);
      expect((await admin.call('listApis')).body.listapisresponse.count).toBe(commands.length + 1);
      expect((await user.call('listApis', { name: 'createZone' })).status).toBe(431);
    });
  });

  describe('authentication', () => {
    const TEXT = 'unable to verify user credentials and/or request signature';

    it('refuses a request without apikey or signature', async () => {
      const none = await admin.call('listZones', {}, { unsigned: true });
      expect(none.status).toBe(401);
      expect(none.body).toEqual({ listzonesresponse: { errorcode: 401, cserrorcode: 9999, errortext: TEXT } });
      const params = admin.signedParams('listZones');
      delete params.signature;
      expect((await admin.send(params)).status).toBe(401);
    });

    it('refuses a wrong signature, an unknown apikey and a tampered value', async () => {
      const params = admin.signedParams('listZones', { name: 'a' });
      expect((await admin.send({ ...params, signature: 'AAAAAAAAAAAAAAAAAAAAAAAAAAA=' })).status).toBe(401);
      expect((await admin.send({ ...params, name: 'b' })).status).toBe(401);
      const stranger = new ApiClient(baseUrl, 'nobody', 'nothing');
      const unknown = await stranger.call('listZones');
      expect([unknown.status, unknown.body.listzonesresponse.errortext]).toEqual([401, TEXT]);
      const wrongSecret = new ApiClient(baseUrl, ADMIN.apiKey, USER.secretKey);
      expect((await wrongSecret.call('listZones')).status).toBe(401);
    });

    it('refuses an expired signatureVersion 3 request and one without expires', async () => {
      const expired = await admin.call('listZones', { signatureVersion: '3', expires: '2020-01-01T00:00:00+0000' });
      expect([expired.status, expired.body.listzonesresponse.errortext]).toEqual([401, TEXT]);
      const noExpiry = await admin.call('listZones', { signatureVersion: '3' }, { noExpiry: true });
      expect(noExpiry.status).toBe(401);
      const future = new Date(Date.now() + 60_000).toISOString().replace(/\.\d+Z$/, 'Z');
      expect((await admin.call('listZones', { signatureVersion: '3', expires: future })).status).toBe(200);
    });

    it('accepts a request without signatureVersion/expires (older clients)', async () => {
      expect((await admin.call('listZones', {}, { noExpiry: true })).status).toBe(200);
    });

    it('puts neither secrets nor signatures in the log', () => {
      const log = logger.lines.join('\n');
      expect(log).toContain('listZones user=alice status=200');
      for (const secret of [ADMIN.secretKey, USER.secretKey, ADMIN.apiKey, USER.apiKey]) expect(log).not.toContain(secret);
      expect(log).not.toMatch(/signature=/i);
    });
  });

  describe('refusals', () => {
    it('answers 432 under errorresponse for an unknown or missing command', async () => {
      const unknown = await admin.call('launchMissiles');
      expect(unknown.status).toBe(432);
      expect(unknown.body.errorresponse.errortext).toContain('launchMissiles');
      expect(unknown.body.errorresponse.errortext).toContain('does not exist or it is not available for user');
      const none = await rawRequest('GET', `/client/api?${signedQuery(ADMIN, {})}`);
      expect(none.status).toBe(432);
      expect(JSON.parse(none.text).errorresponse.errortext).toContain('command');
    });

    it('answers 432 for an Admin-only command called by a User', async () => {
      const { status, body } = await user.call('createZone', { name: 'x' });
      expect(status).toBe(432);
      expect(body.createzoneresponse.errortext).toContain('not available for user');
    });

    it('answers 432 for response=xml, saying strata speaks JSON only', async () => {
      const { status, body } = await admin.call('listZones', { response: 'xml' });
      expect(status).toBe(432);
      expect(body.listzonesresponse.errortext).toContain('JSON only');
    });

    it('answers JSON when response is missing', async () => {
      const params = admin.signedParams('listZones');
      const without: Record<string, string> = { ...params };
      delete without.response;
      delete without.signature;
      without.signature = signRequest(without, ADMIN.secretKey);
      const { status, headers } = await admin.send(without);
      expect(status).toBe(200);
      expect(headers.get('content-type')).toBe('application/json; charset=UTF-8');
    });

    it.each([
      ['missing', {}, 'missing parameter name'],
      ['above max', { name: 'z', chainsize: '101' }, 'Invalid parameter chainsize value="101": must be between 0 and 100'],
      ['not a number', { name: 'z', chainsize: 'lots' }, 'Invalid parameter chainsize value="lots": not an integer'],
      ['not in enum', { name: 'z', compressionlibrary: 'lz4' }, 'Invalid parameter compressionlibrary value="lz4": expected one of zstd, zlib'],
      ['too long', { name: 'x'.repeat(300) }, 'Invalid parameter name value="' + 'x'.repeat(64) + '... (300 characters)": longer than 255'],
    ])('answers 431 naming the parameter (%s)', async (_label, params, text) => {
      const { status, body } = await admin.call('createZone', params);
      expect(status).toBe(431);
      expect(body.createzoneresponse).toEqual({ errorcode: 431, cserrorcode: 4350, errortext: expect.stringContaining(text) });
    });

    it('answers 431 for a bad uuid', async () => {
      const { status, body } = await user.call('createBackup', { virtualmachineid: "1' OR '1'='1" });
      expect(status).toBe(431);
      expect(body.createbackupresponse.errortext).toContain(`Invalid parameter virtualmachineid value="1' OR '1'='1": not a UUID`);
    });

    it('answers 531 when a User sends an Admin-only parameter', async () => {
      const { status, body } = await user.call('createBackup', { virtualmachineid: randomUUID(), hostid: randomUUID() });
      expect(status).toBe(531);
      expect(body.createbackupresponse.errortext).toContain('hostid');
      expect((await admin.call('createBackup', { virtualmachineid: randomUUID(), hostid: randomUUID() })).status).toBe(200);
    });

    it.each(['PUT', 'DELETE', 'PATCH', 'OPTIONS'])('answers 405 to %s', async (method) => {
      const answer = await rawRequest(method, `/client/api?${signedQuery(ADMIN, { command: 'listZones' })}`);
      expect(answer.status).toBe(405);
      expect(answer.headers.allow).toBe('GET, POST');
      expect(JSON.parse(answer.text).listzonesresponse.errorcode).toBe(405);
    });

    it('answers 530 with a request id and no internals when a command fails unexpectedly', async () => {
      const { status, body, headers } = await user.call('explode');
      expect(status).toBe(530);
      const requestId = headers.get('x-request-id');
      expect(body).toEqual({
        exploderesponse: { errorcode: 530, cserrorcode: 9999, errortext: `internal error, see the server log for request ${requestId}` },
      });
      expect(logger.lines.some((l) => l.includes(`request ${requestId}`) && l.includes('TypeError'))).toBe(true);
    });

    it('refuses conflicting duplicates', async () => {
      const answer = await rawRequest('GET', `/client/api?${signedQuery(ADMIN, { command: 'listZones', name: 'a' })}&NAME=b`);
      expect(answer.status).toBe(431);
      expect(JSON.parse(answer.text).listzonesresponse.errortext).toContain('NAME');
    });
  });

  describe('limits', () => {
    it('answers 431 in JSON to a URL above 64 KB, and to one above what Node reads', async () => {
      for (const size of [70 * 1024, 200 * 1024]) {
        const answer = await rawRequest('GET', `/client/api?command=listZones&junk=${'a'.repeat(size)}`);
        expect(answer.status).toBe(431);
        expect(JSON.parse(answer.text)).toEqual({ errorresponse: expect.objectContaining({ errorcode: 431 }) });
      }
    });

    it('answers 431 to a body above 1 MB', async () => {
      const answer = await rawRequest('POST', '/client/api', `command=listZones&junk=${'a'.repeat(1024 * 1024 + 10)}`);
      expect(answer.status).toBe(431);
      expect(JSON.parse(answer.text).errorresponse.errortext).toContain('too large');
    });

    it('answers 431 to too many parameters', async () => {
      const many = Array.from({ length: 1500 }, (_, i) => `p${i}=${i}`).join('&');
      const answer = await rawRequest('POST', '/client/api', `command=listZones&${many}`);
      // The command is named in the body, so even this early refusal comes in the command's envelope.
      expect(answer.status).toBe(431);
      expect(JSON.parse(answer.text).listzonesresponse.errortext).toContain('too many parameters');
    });

    it('answers 430 in JSON to bytes Node refuses in a request line', async () => {
      const answer = await rawHttp(Buffer.from('GET /client/api?name=\xff\x00 HTTP/1.1\r\nHost: x\r\n\r\n', 'latin1'));
      expect(answer.status).toBe(430);
      expect(JSON.parse(answer.text).errorresponse.errorcode).toBe(430);
    });
  });

  describe('fuzz', () => {
    const seed = Number(process.env.API_FUZZ_SEED ?? Date.now() % 2 ** 31);

    /** mulberry32: small, seedable, good enough to pick junk. */
    function rng(s: number) {
      return () => {
        s = (s + 0x6d2b79f5) | 0;
        let t = Math.imul(s ^ (s >>> 15), 1 | s);
        t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
      };
    }

    it('answers at least 300 malformed requests with JSON below 500 and keeps answering', async () => {
      const random = rng(seed);
      const int = (n: number) => Math.floor(random() * n);
      const pick = <T>(items: readonly T[]): T => items[int(items.length)];
      const NASTY = [
        "'; DROP TABLE events; --",
        '$(reboot)',
        '`reboot`',
        '\u0000',
        'a\u0000b',
        '\r\nSet-Cookie: x=y',
        '../../../../etc/passwd',
        '%00',
        '%',
        '%zz',
        '\u202e\u0301\ufeff',
        '東京💾',
        '\ud83d',
        '<script>alert(1)</script>',
        '{"$ne":null}',
        '-1',
        '99999999999999999999999999',
        '1e308',
        'NaN',
        'true',
        'TRUE',
        '',
        ' ',
        '~*()!\'',
        '__proto__',
        'constructor',
        'x'.repeat(70_000),
        '00000000-0000-0000-0000-000000000000',
      ];
      const NAMES = ['command', 'apikey', 'signature', 'response', 'expires', 'signatureVersion', 'name', 'id', 'page', 'pagesize', 'keyword', 'hostid', 'virtualmachineid', 'tags[0].key', 'tags[99999999].key', 'tags[-1].key', '__proto__', 'constructor', '', '=', '&', '[', 'a[0]', 'a[0].', '東京', '\u0000'];
      const COMMANDS = ['listZones', 'createZone', 'deleteZone', 'createBackup', 'queryAsyncJobResult', 'listApis', 'LISTZONES', 'nope', '', '\u0000', "'; DROP TABLE"];
      const FUZZ_COMMANDS = commands.filter((c) => !['explode', 'refuseThing'].includes(c.name));
      // A lone surrogate cannot be UTF-8 encoded, so no real client can sign one.
      const noSurrogates = (s: string) => s.replace(/[\ud800-\udfff]/g, '?');
      const junkText = () => (random() < 0.7 ? pick(NASTY) : Array.from({ length: int(40) }, () => String.fromCodePoint(int(0x3000))).join(''));
      const encodeLoosely = (s: string) => {
        // Sometimes well encoded, sometimes raw printable ASCII, sometimes broken on purpose.
        const r = random();
        if (r < 0.5) return encodeURIComponent(s.replace(/[\ud800-\udfff]/g, 'x'));
        if (r < 0.8) return s.replace(/[^\x21-\x7e]/g, (c) => `%${(c.charCodeAt(0) & 0xff).toString(16).padStart(2, '0')}`);
        return s.replace(/[^\x21-\x7e]/g, '') + pick(['%', '%g', '%C3', '%ff', '%e2%82', '']);
      };

      const makeRequest = (i: number): { label: string; bytes: Buffer } => {
        const kind = i % 12;
        const method = random() < 0.85 ? pick(['GET', 'POST']) : pick(['PUT', 'DELETE', 'PATCH', 'OPTIONS']);
        let params: string;
        if (kind === 0) {
          // random names and values, no signature
          params = Array.from({ length: int(12) }, () => `${encodeLoosely(pick(NAMES))}=${encodeLoosely(junkText())}`).join('&');
        } else if (kind === 1) {
          // good signature, junk values for a real command's parameters
          const client = random() < 0.5 ? ADMIN : USER;
          const command = pick(FUZZ_COMMANDS);
          const p: Record<string, string> = { command: command.name };
          for (const spec of command.params) {
            if (spec.adminOnly && client.role !== 'Admin') continue;
            if (random() < 0.7) p[spec.type === 'map' ? `${spec.name}[${int(3)}].${pick(['key', 'value', 'x'])}` : spec.name] = noSurrogates(junkText());
          }
          if (random() < 0.3) p.page = noSurrogates(pick(NASTY));
          params = signedQuery(client, p);
        } else if (kind === 2) {
          // good signature over junk names
          const p: Record<string, string> = { command: pick(COMMANDS) || 'listZones' };
          for (let n = int(8); n > 0; n--) p[pick(NAMES) || 'x'] = noSurrogates(junkText());
          params = signedQuery(random() < 0.5 ? ADMIN : USER, p);
        } else if (kind === 3) {
          // bad signature
          params = query({ command: pick(COMMANDS), apiKey: pick([ADMIN.apiKey, USER.apiKey, junkText()]), signature: junkText(), response: 'json' });
        } else if (kind === 4) {
          params = pick(['%', '%%', '%zz=1', 'a=%', 'a=%e2%82', '=', '=x', '&&&', '&=&', 'a==b', '%00=%00', '%ff%fe=1', 'command=%u0041']);
        } else if (kind === 5) {
          params = Array.from({ length: 500 + int(3000) }, (_, n) => `p${n}=${n}`).join('&');
        } else if (kind === 6) {
          params = `command=listZones&name=${'%41'.repeat(int(40_000))}`;
        } else if (kind === 7) {
          // raw bytes Node's parser refuses (control characters, non-ASCII)
          params = `command=${pick(['\u0000', '\u0001', '\u007f', '\u00ff', '\t'])}`;
        } else if (kind === 8) {
          params = signedQuery(ADMIN, { command: 'listZones', expires: pick(['2020-01-01T00:00:00+0000', 'never', '9999-99-99T99:99:99+9999', '']), signatureVersion: pick(['3', '2', 'x']) });
        } else if (kind === 9) {
          params = `command=listZones&response=${pick(['xml', 'XML', 'yaml', '%00', 'json'])}&apiKey=${ADMIN.apiKey}`;
        } else if (kind === 10) {
          params = `${encodeLoosely(pick(NAMES))}[${int(5)}].${encodeLoosely(junkText())}=${encodeLoosely(junkText())}`;
        } else {
          params = signedQuery(pick([ADMIN, USER]), { command: pick(COMMANDS) || 'x', name: noSurrogates(junkText()) });
        }

        const inBody = method !== 'GET' && random() < 0.6;
        const contentType =
          random() < 0.75
            ? pick(['application/x-www-form-urlencoded', 'application/x-www-form-urlencoded; charset=UTF-8'])
            : pick(['application/json', 'multipart/form-data; boundary=x', 'text/plain']);
        const target = inBody ? pick(['/client/api', '/client/api/']) : `/client/api?${params}`;
        const body = inBody ? Buffer.from(params, 'utf8') : Buffer.alloc(0);
        const head =
          `${method} ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n` +
          (inBody ? `Content-Type: ${contentType}\r\nContent-Length: ${body.length}\r\n` : '') +
          '\r\n';
        return { label: `#${i} kind=${kind} ${method} ${target.slice(0, 120)}`, bytes: Buffer.concat([Buffer.from(head, 'utf8'), body]) };
      };

      const failures: string[] = [];
      const statuses = new Map<number, number>();
      const COUNT = 360;
      for (let i = 0; i < COUNT; i++) {
        const { label, bytes } = makeRequest(i);
        try {
          const answer = await rawHttp(bytes);
          statuses.set(answer.status, (statuses.get(answer.status) ?? 0) + 1);
          const parsed = JSON.parse(answer.text) as Record<string, Record<string, unknown>>;
          const keys = Object.keys(parsed);
          const inner = parsed[keys[0]];
          const problems = [
            answer.status >= 500 && `status ${answer.status}`,
            !answer.headers['content-type']?.startsWith('application/json') && `content-type ${answer.headers['content-type']}`,
            (keys.length !== 1 || !keys[0].endsWith('response')) && `envelope ${keys.join(',')}`,
            answer.status !== 200 && inner.errorcode !== answer.status && `errorcode ${inner.errorcode}`,
            /\n\s+at |\.ts:\d+/.test(answer.text) && 'stack trace in answer',
            answer.text.includes(ADMIN.secretKey) && 'secret in answer',
          ].filter(Boolean);
          if (problems.length) failures.push(`${label}: ${problems.join('; ')} ${answer.text.slice(0, 200)}`);
        } catch (e) {
          failures.push(`${label}: ${(e as Error).message}`);
        }
        if (failures.length > 10) break;
      }
      if (failures.length) throw new Error(`API fuzz failed with API_FUZZ_SEED=${seed}:\n${failures.join('\n')}`);
      // The junk must reach every stage of the pipeline, not just bounce off the first check.
      const seen = [...statuses.keys()].sort();
      if (process.env.API_FUZZ_VERBOSE) console.log(`API_FUZZ_SEED=${seed}`, Object.fromEntries(statuses));
      for (const status of [200, 401, 405, 430, 431, 432]) {
        if (!statuses.has(status)) throw new Error(`API fuzz with API_FUZZ_SEED=${seed} never got ${status} (got ${seen.join(', ')})`);
      }

      // and the server is still fine
      expect((await admin.call('createZone', { name: 'after the fuzz' })).status).toBe(200);
      const after = await admin.call('listZones', { name: 'after the fuzz' });
      expect(after.status).toBe(200);
      expect(after.body.listzonesresponse.count).toBe(1);
    });
  });

  describe('module wiring', () => {
    it('takes commands from a factory with injected services, as arrays of arrays', async () => {
      const GREETING = 'GREETING';
      @Module({ providers: [{ provide: GREETING, useValue: 'hello' }], exports: [GREETING] })
      class GreetingModule {}
      const greet = (greeting: string): CommandDefinition => ({
        name: 'greet',
        description: 'Says hello',
        isAsync: false,
        adminOnly: false,
        responseObject: 'greeting',
        params: [],
        async handle(_params, ctx) {
          return { kind: 'object', name: 'greeting', object: { text: `${greeting} ${ctx.user.name}` } };
        },
      });
      @Module({
        imports: [
          ApiHttpModule.forRoot({
            imports: [GreetingModule],
            commands: { useFactory: (greeting: string) => [[greet(greeting)], []], inject: [GREETING] },
            users: { useValue: new StaticUserDirectory([USER]) },
          }),
        ],
      })
      class AppModule {}

      const other = await NestFactory.create(AppModule, { bodyParser: false, abortOnError: false, logger: false });
      configureApiHttpApp(other);
      await other.listen(0, '127.0.0.1');
      try {
        const url = `http://127.0.0.1:${(other.getHttpServer().address() as AddressInfo).port}`;
        const client = new ApiClient(url, USER.apiKey, USER.secretKey);
        expect((await client.call('greet', {}, { method: 'POST' })).body).toEqual({ greetresponse: { greeting: { text: 'hello alice' } } });
      } finally {
        await other.close();
      }
    });
  });
});
