import { randomUUID } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'pg';
import type * as ConfigModule from '@strata/config';
import type * as DomainModule from '@strata/domain';
import type * as RuntimeModule from '../../apps/cli/src/runtime';
import { ApiCallResult, ApiClient, ApiParamValue } from '../support/api-client';
import { createTestDatabase } from '../support/database';
import { RunningPlane, startManagementPlane } from '../support/management-plane';
import { DIST, runStrata, startStrata, StrataProcess, testEnv, until } from '../support/strata-process';

/** A module of the compiled build: the code the running processes use, not the sources being edited. */
function fromBuild<T>(path: string): T {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require(join(DIST, path)) as T;
}

/**
 * The catalog commands (zones, repositories, native and imported offerings, settings, async jobs,
 * listApis) against a running management plane: envelopes, parameter errors, conflicts, the repository
 * address rules, secrets, roles, and a seeded fuzz of the real commands. Everything goes through signed
 * HTTP requests; the database is only read (events and read models) to prove what was, or was not, stored.
 */

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = any;
type Params = Record<string, ApiParamValue>;

const DATE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+0000$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

const envelope = (command: string) => `${command.toLowerCase()}response`;
const show = (res: ApiCallResult) => `HTTP ${res.status} ${JSON.stringify(res.body).slice(0, 600)}`;

/** The inside of `{"<command>response": ...}`, checking that the envelope is the only key. */
function inner(res: ApiCallResult, command: string): Json {
  expect(Object.keys(res.body)).toEqual([envelope(command)]);
  return res.body[envelope(command)];
}

async function ok(client: ApiClient, command: string, params: Params = {}, method: 'GET' | 'POST' = 'GET'): Promise<Json> {
  const res = await client.call(command, params, { method });
  if (res.status !== 200) throw new Error(`${command} ${JSON.stringify(params)} failed: ${show(res)}`);
  expect(res.headers.get('content-type')).toBe('application/json; charset=UTF-8');
  return inner(res, command);
}

/** An error answer as API.md says: HTTP status = errorcode, cserrorcode, and for 431 the parameter named. */
function expectError(res: ApiCallResult, command: string, code: number, param?: string): string {
  const body = res.body[envelope(command)];
  if (res.status !== code || !body || body.errorcode !== code) {
    throw new Error(`${command}: expected ${code}${param ? ` naming ${param}` : ''}, got ${show(res)}`);
  }
  expect(Object.keys(res.body)).toEqual([envelope(command)]);
  expect(Object.keys(body).sort()).toEqual(['cserrorcode', 'errorcode', 'errortext']);
  expect(body.cserrorcode).toBe(code === 430 || code === 431 ? 4350 : 9999);
  if (param && !new RegExp(`parameter ${param}\\b`).test(body.errortext)) {
    throw new Error(`${command}: the error text does not name ${param}: ${body.errortext}`);
  }
  return body.errortext as string;
}

async function refused(client: ApiClient, command: string, params: Params, code: number, param?: string): Promise<string> {
  return expectError(await client.call(command, params), command, code, param);
}

/** Mulberry32: a tiny seeded PRNG, so a failing fuzz run can be replayed with FUZZ_SEED. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** API.md's Settings table, the `backup.validation.*` and `nas.*` rows spelled out. Scope undefined: API.md leaves it open. */
const SETTINGS_OF_API_MD: [name: string, defaultValue: string, scope: 'zone' | 'global' | undefined][] = [
  ['backup.chain.size', '8', 'zone'],
  ['knib.timeout', '43200', 'zone'],
  ['backup.compression.task.enabled', 'true', 'global'],
  ['backup.compression.max.concurrent.compressions.per.host', '5', 'global'],
  ['backup.compression.max.concurrent.operations', '10', 'zone'],
  ['backup.compression.max.job.retries', '2', 'global'],
  ['backup.compression.retry.interval', '60', 'global'],
  ['backup.compression.timeout', '28800', 'global'],
  ['backup.compression.minimum.free.storage', '1.0', 'zone'],
  ['backup.compression.coroutines', '1', 'global'],
  ['backup.compression.rate.limit', '0', 'global'],
  ['backup.validation.task.enabled', 'true', undefined],
  ['backup.validation.interval', '24', undefined],
  ['backup.validation.max.concurrent.operations', '10', undefined],
  ['backup.validation.max.concurrent.operations.per.host', '1', undefined],
  ['backup.validation.max.job.retries', '2', undefined],
  ['backup.validation.retry.interval', '60', undefined],
  ['backup.validation.timeout', '3600', undefined],
  ['backup.validation.boot.default.timeout', '240', undefined],
  ['backup.validation.screenshot.default.wait', '60', undefined],
  ['backup.validation.end.chain.on.fail', 'true', undefined],
  ['nas.backup.encryption.enabled', 'false', 'zone'],
  ['nas.backup.encryption.passphrase', '', 'zone'],
  ['nas.backup.bandwidth.limit.mbps', '0', 'zone'],
  ['nas.backup.integrity.check', 'false', 'zone'],
  ['nas.infra.backup.enabled', 'false', 'global'],
  ['nas.infra.backup.location', '', 'global'],
  ['nas.infra.backup.retention', '7', 'global'],
  ['nas.infra.backup.include.database', 'false', 'global'],
];

/** The commands under test, with API.md's async flag, Admin-only flag and parameters (required ones first). */
interface CommandContract {
  isasync: boolean;
  admin: boolean;
  required: string[];
  optional: string[];
}
const PAGING = ['keyword', 'page', 'pagesize'];
const CONTRACT: Record<string, CommandContract> = {
  createZone: { isasync: false, admin: true, required: ['name'], optional: [] },
  listZones: { isasync: false, admin: false, required: [], optional: ['id', 'name', ...PAGING] },
  deleteZone: { isasync: false, admin: true, required: ['id'], optional: [] },
  createNativeBackupOffering: {
    isasync: false,
    admin: true,
    required: ['name'],
    optional: ['compress', 'validate', 'validationsteps', 'allowquickrestore', 'allowextractfile', 'backupchainsize', 'compressionlibrary'],
  },
  listNativeBackupOfferings: {
    isasync: false,
    admin: true,
    required: [],
    optional: ['id', 'name', 'compress', 'validate', 'allowquickrestore', 'allowextractfile', 'showremoved', ...PAGING],
  },
  deleteNativeBackupOffering: { isasync: false, admin: true, required: ['id'], optional: [] },
  importBackupOffering: { isasync: true, admin: true, required: ['name', 'description', 'zoneid', 'externalid', 'allowuserdrivenbackups'], optional: ['repositoryid'] },
  listBackupOfferings: { isasync: false, admin: false, required: [], optional: ['id', 'zoneid', ...PAGING] },
  deleteBackupOffering: { isasync: false, admin: true, required: ['id'], optional: [] },
  listBackupProviderOfferings: { isasync: false, admin: true, required: ['zoneid'], optional: PAGING },
  addBackupRepository: { isasync: false, admin: true, required: ['name', 'address', 'type', 'zoneid'], optional: ['mountopts', 'capacitybytes'] },
  listBackupRepositories: { isasync: false, admin: true, required: [], optional: ['id', 'name', 'zoneid', ...PAGING] },
  updateBackupRepository: { isasync: false, admin: true, required: ['id'], optional: ['name', 'address', 'mountopts'] },
  deleteBackupRepository: { isasync: false, admin: true, required: ['id'], optional: [] },
  listConfigurations: { isasync: false, admin: true, required: [], optional: ['name', 'category', 'zoneid', 'hostid', ...PAGING] },
  // API.md marks `value` bold, but an empty value must stay possible (it clears a string setting such as
  // the passphrase, and CloudStack's own updateConfiguration has it optional): checked by behaviour below.
  updateConfiguration: { isasync: false, admin: true, required: ['name'], optional: ['value', 'zoneid', 'hostid'] },
  queryAsyncJobResult: { isasync: false, admin: false, required: ['jobid'], optional: [] },
  listAsyncJobs: { isasync: false, admin: false, required: [], optional: ['startdate', ...PAGING] },
  listApis: { isasync: false, admin: false, required: [], optional: ['name', ...PAGING] },
};
const ADMIN_ONLY = Object.keys(CONTRACT).filter((c) => CONTRACT[c].admin);
const FOR_USERS = Object.keys(CONTRACT).filter((c) => !CONTRACT[c].admin);

describe('catalog API against a running strata', () => {
  let plane: RunningPlane;
  let admin: ApiClient;
  let user: ApiClient;
  let userKeys: { apikey: string; secretkey: string; userid: string };
  let pg: Client;
  const secretsToHide: string[] = [];

  const baseUrl = (endpoint: string) => new URL(endpoint).origin;
  const eventCount = async () => Number((await pg.query('SELECT count(*)::int AS n FROM events')).rows[0].n);
  /** Every row of every table (events and read models) as text. */
  const wholeDatabase = async () => {
    const tables: { tablename: string }[] = (await pg.query(`SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename`)).rows;
    const texts: Record<string, string> = {};
    for (const { tablename } of tables) {
      texts[tablename] = (await pg.query(`SELECT coalesce(string_agg(t::text, E'\\n'), '') AS txt FROM "${tablename}" t`)).rows[0].txt;
    }
    return texts;
  };
  /** A refused request must append no event. */
  const refusedWithoutEvents = async (command: string, params: Params, code: number, param?: string) => {
    const before = await eventCount();
    const text = await refused(admin, command, params, code, param);
    expect(await eventCount()).toBe(before);
    return text;
  };
  const newZone = async (name: string) => (await ok(admin, 'createZone', { name })).zone as { id: string; name: string };
  const localDir = () => mkdtempSync(join(tmpdir(), 'strata-catalog-'));
  const newRepo = async (zoneid: string, name: string, extra: Params = {}) =>
    (await ok(admin, 'addBackupRepository', { name, type: 'local', address: localDir(), zoneid, ...extra })).backuprepository as Json;
  const newNative = async (name: string, extra: Params = {}) => (await ok(admin, 'createNativeBackupOffering', { name, ...extra })).nativebackupoffering as Json;

  beforeAll(async () => {
    plane = await startManagementPlane();
    admin = new ApiClient(baseUrl(plane.endpoint), plane.admin.apikey, plane.admin.secretkey);
    userKeys = await plane.createKeys('User', 'alice');
    user = new ApiClient(baseUrl(plane.endpoint), userKeys.apikey, userKeys.secretkey);
    secretsToHide.push(plane.admin.secretkey, userKeys.secretkey);
    pg = new Client({ connectionString: plane.db.url });
    await pg.connect();
  });

  afterAll(async () => {
    await pg?.end();
    await plane?.stop();
  });

  describe('zones', () => {
    it('creates, lists (paging, keyword, count = total) and deletes zones with the envelopes of API.md', async () => {
      const created = await admin.call('createZone', { name: 'pz-01' });
      const zoneBody = inner(created, 'createZone');
      expect(Object.keys(zoneBody)).toEqual(['zone']);
      expect(Object.keys(zoneBody.zone).sort()).toEqual(['id', 'name']);
      expect(zoneBody.zone).toEqual({ id: expect.stringMatching(UUID), name: 'pz-01' });
      const ids = [zoneBody.zone.id as string];
      for (let i = 2; i <= 7; i++) ids.push((await newZone(`pz-0${i}`)).id);

      const page1 = await ok(admin, 'listZones', { keyword: 'pz-', pagesize: 3, page: 1 });
      expect(page1).toEqual({ count: 7, zone: ids.slice(0, 3).map((id, i) => ({ id, name: `pz-0${i + 1}` })) });
      const page3 = await ok(admin, 'listZones', { keyword: 'PZ-', pagesize: 3, page: 3 });
      expect(page3).toEqual({ count: 7, zone: [{ id: ids[6], name: 'pz-07' }] });
      // past the end: the total, no array (CloudStack's serializer)
      expect(await ok(admin, 'listZones', { keyword: 'pz-', pagesize: 3, page: 4 })).toEqual({ count: 7 });
      // POST (form-encoded) answers the same
      expect(await ok(admin, 'listZones', { keyword: 'pz-', pagesize: 3, page: 1 }, 'POST')).toEqual(page1);
      expect(await ok(admin, 'listZones', { name: 'pz-04' })).toEqual({ count: 1, zone: [{ id: ids[3], name: 'pz-04' }] });
      expect(await ok(admin, 'listZones', { id: ids[4] })).toEqual({ count: 1, zone: [{ id: ids[4], name: 'pz-05' }] });
      // keyword with LIKE wildcards matches them literally
      expect(await ok(admin, 'listZones', { keyword: 'pz%' })).toEqual({});
      expect(await ok(admin, 'listZones', { keyword: 'p_-' })).toEqual({});
      // an empty list is {}
      const empty = await admin.call('listZones', { keyword: 'no-such-zone' });
      expect(empty.body).toEqual({ listzonesresponse: {} });

      const deleted = await admin.call('deleteZone', { id: ids[6] });
      expect(deleted.status).toBe(200);
      expect(inner(deleted, 'deleteZone')).toEqual({ success: true, displaytext: expect.any(String) });
      expect(await ok(admin, 'listZones', { id: ids[6] })).toEqual({});
      expect((await ok(admin, 'listZones', { keyword: 'pz-' })).count).toBe(6);
      await refusedWithoutEvents('deleteZone', { id: ids[6] }, 431, 'id');
      // the name of a deleted zone is free again
      await newZone('pz-07');
    });

    it('refuses bad zone parameters with 431 naming them, appending nothing', async () => {
      await newZone('Taken');
      await refusedWithoutEvents('createZone', {}, 431, 'name');
      await refusedWithoutEvents('createZone', { name: '   ' }, 431, 'name');
      await refusedWithoutEvents('createZone', { name: 'TAKEN' }, 431, 'name');
      await refusedWithoutEvents('createZone', { name: 'x'.repeat(256) }, 431, 'name');
      await refusedWithoutEvents('createZone', { name: 'a\nb' }, 431, 'name');
      await refusedWithoutEvents('deleteZone', {}, 431, 'id');
      await refusedWithoutEvents('deleteZone', { id: 'not-a-uuid' }, 431, 'id');
      await refusedWithoutEvents('deleteZone', { id: randomUUID() }, 431, 'id');
      await refusedWithoutEvents('listZones', { id: '1234' }, 431, 'id');
      await refusedWithoutEvents('listZones', { page: 0 }, 431, 'page');
      await refusedWithoutEvents('listZones', { pagesize: 501 }, 431, 'pagesize');
      await refusedWithoutEvents('listZones', { pagesize: 'ten' }, 431, 'pagesize');
    });
  });

  describe('native backup offerings', () => {
    it('creates with every field and with the defaults, lists with filters and paging, deletes', async () => {
      const full = await admin.call('createNativeBackupOffering', {
        name: 'gold',
        compress: 'true',
        validate: 'True',
        validationsteps: 'wait_for_boot,SCREENSHOT,execute_command',
        allowquickrestore: true,
        allowextractfile: true,
        backupchainsize: 4,
        compressionlibrary: 'ZLIB',
      });
      const gold = inner(full, 'createNativeBackupOffering').nativebackupoffering;
      expect(Object.keys(inner(full, 'createNativeBackupOffering'))).toEqual(['nativebackupoffering']);
      expect(gold).toEqual({
        id: expect.stringMatching(UUID),
        name: 'gold',
        compress: true,
        validate: true,
        validationsteps: 'wait_for_boot,screenshot,execute_command',
        allowquickrestore: true,
        allowextractfile: true,
        backupchainsize: 4,
        compressionlibrary: 'zlib',
        created: expect.stringMatching(DATE),
      });
      const plain = await newNative('plain');
      expect(plain).toEqual({
        id: expect.stringMatching(UUID),
        name: 'plain',
        compress: false,
        validate: false,
        validationsteps: 'screenshot',
        allowquickrestore: false,
        allowextractfile: false,
        compressionlibrary: 'zstd',
        created: expect.stringMatching(DATE),
      });
      const unlimited = await newNative('unlimited', { backupchainsize: -1 });
      expect(unlimited.backupchainsize).toBe(-1);

      const paged: string[] = [];
      for (let i = 1; i <= 6; i++) paged.push((await newNative(`pn-${i}`, { compress: i % 2 === 0 })).id);
      const p1 = await ok(admin, 'listNativeBackupOfferings', { keyword: 'pn-', pagesize: 4 });
      expect(p1.count).toBe(6);
      expect(p1.nativebackupoffering.map((o: Json) => o.id)).toEqual(paged.slice(0, 4));
      const p2 = await ok(admin, 'listNativeBackupOfferings', { keyword: 'pn-', pagesize: 4, page: 2 });
      expect(p2).toEqual({ count: 6, nativebackupoffering: [expect.objectContaining({ id: paged[4] }), expect.objectContaining({ id: paged[5] })] });
      const compressed = await ok(admin, 'listNativeBackupOfferings', { keyword: 'pn-', compress: true });
      expect(compressed.nativebackupoffering.map((o: Json) => o.name)).toEqual(['pn-2', 'pn-4', 'pn-6']);
      expect((await ok(admin, 'listNativeBackupOfferings', { name: 'gold' })).nativebackupoffering).toEqual([gold]);
      expect((await ok(admin, 'listNativeBackupOfferings', { id: plain.id, validate: false })).count).toBe(1);
      expect(await ok(admin, 'listNativeBackupOfferings', { id: plain.id, allowquickrestore: true })).toEqual({});

      const del = await admin.call('deleteNativeBackupOffering', { id: plain.id });
      expect(inner(del, 'deleteNativeBackupOffering')).toEqual({ success: true, displaytext: expect.any(String) });
      expect(await ok(admin, 'listNativeBackupOfferings', { id: plain.id })).toEqual({});
      const removed = await ok(admin, 'listNativeBackupOfferings', { id: plain.id, showremoved: true });
      expect(removed).toEqual({ count: 1, nativebackupoffering: [{ ...plain, removed: expect.stringMatching(DATE) }] });
      await refusedWithoutEvents('deleteNativeBackupOffering', { id: plain.id }, 431, 'id');
      // the name of a deleted offering can be used again
      await newNative('plain');
    });

    it('refuses bad native offering parameters with 431 naming them, appending nothing', async () => {
      await newNative('dup-native');
      const c = 'createNativeBackupOffering';
      await refusedWithoutEvents(c, {}, 431, 'name');
      await refusedWithoutEvents(c, { name: ' ' }, 431, 'name');
      await refusedWithoutEvents(c, { name: 'DUP-NATIVE' }, 431, 'name');
      await refusedWithoutEvents(c, { name: 'n1', backupchainsize: 1001 }, 431, 'backupchainsize');
      await refusedWithoutEvents(c, { name: 'n1', backupchainsize: -2 }, 431, 'backupchainsize');
      await refusedWithoutEvents(c, { name: 'n1', backupchainsize: '4.5' }, 431, 'backupchainsize');
      await refusedWithoutEvents(c, { name: 'n1', backupchainsize: '99999999999' }, 431, 'backupchainsize');
      await refusedWithoutEvents(c, { name: 'n1', compressionlibrary: 'lz4' }, 431, 'compressionlibrary');
      await refusedWithoutEvents(c, { name: 'n1', validationsteps: 'reboot' }, 431, 'validationsteps');
      await refusedWithoutEvents(c, { name: 'n1', validationsteps: 'screenshot,reboot' }, 431, 'validationsteps');
      await refusedWithoutEvents(c, { name: 'n1', compress: 'yes' }, 431, 'compress');
      await refusedWithoutEvents(c, { name: 'n1', validate: '1' }, 431, 'validate');
      await refusedWithoutEvents(c, { name: 'n1', allowquickrestore: 'on' }, 431, 'allowquickrestore');
      await refusedWithoutEvents(c, { name: 'n1', allowextractfile: 'no' }, 431, 'allowextractfile');
      await refusedWithoutEvents('listNativeBackupOfferings', { showremoved: 'maybe' }, 431, 'showremoved');
      await refusedWithoutEvents('listNativeBackupOfferings', { id: 'abc' }, 431, 'id');
      await refusedWithoutEvents('deleteNativeBackupOffering', {}, 431, 'id');
      await refusedWithoutEvents('deleteNativeBackupOffering', { id: 'abc' }, 431, 'id');
      await refusedWithoutEvents('deleteNativeBackupOffering', { id: randomUUID() }, 431, 'id');
    });
  });

  describe('backup repositories', () => {
    it('adds, lists (paging), updates and deletes repositories; a zone with one cannot be deleted', async () => {
      const zone = await newZone('repo-zone');
      const other = await newZone('repo-zone-2');
      const dir = localDir();
      const added = await admin.call('addBackupRepository', { name: 'r-1', type: 'local', address: dir, zoneid: zone.id, capacitybytes: 1_000_000_000_000, mountopts: 'ro' });
      const repoBody = inner(added, 'addBackupRepository');
      expect(Object.keys(repoBody)).toEqual(['backuprepository']);
      const r1 = repoBody.backuprepository;
      expect(r1).toEqual({
        id: expect.stringMatching(UUID),
        zoneid: zone.id,
        zonename: 'repo-zone',
        name: 'r-1',
        address: dir,
        type: 'local',
        mountopts: 'ro',
        capacitybytes: 1_000_000_000_000,
        usedbytes: 0, // strata's addition
        created: expect.stringMatching(DATE),
      });
      const nfs = await ok(admin, 'addBackupRepository', { name: 'r-nfs', type: 'NFS', address: 'nas.example.com:/export/backups', zoneid: zone.id });
      expect(nfs.backuprepository).toMatchObject({ type: 'nfs', address: 'nas.example.com:/export/backups', mountopts: '' });
      expect(nfs.backuprepository.capacitybytes).toBeUndefined();
      const cifs = await ok(admin, 'addBackupRepository', { name: 'r-cifs', type: 'cifs', address: '//fileserver/share$/strata', zoneid: zone.id, mountopts: 'vers=3.0' });
      expect(cifs.backuprepository).toMatchObject({ type: 'cifs', address: '//fileserver/share$/strata' });
      const ceph = await ok(admin, 'addBackupRepository', { name: 'r-ceph', type: 'cephfs', address: 'mon1:6789,mon2:6789:/strata', zoneid: zone.id });
      expect(ceph.backuprepository).toMatchObject({ type: 'cephfs' });
      const r5 = await newRepo(zone.id, 'r-5');
      // the same name in another zone is fine; in the same zone it is not (case-insensitively)
      await newRepo(other.id, 'r-1');
      await refusedWithoutEvents('addBackupRepository', { name: 'R-1', type: 'local', address: localDir(), zoneid: zone.id }, 431, 'name');

      const ids = [r1.id, nfs.backuprepository.id, cifs.backuprepository.id, ceph.backuprepository.id, r5.id];
      const p1 = await ok(admin, 'listBackupRepositories', { zoneid: zone.id, pagesize: 2 });
      expect(p1.count).toBe(5);
      expect(p1.backuprepository.map((r: Json) => r.id)).toEqual(ids.slice(0, 2));
      const p3 = await ok(admin, 'listBackupRepositories', { zoneid: zone.id, pagesize: 2, page: 3 });
      expect(p3).toEqual({ count: 5, backuprepository: [expect.objectContaining({ id: r5.id, zonename: 'repo-zone' })] });
      expect((await ok(admin, 'listBackupRepositories', { keyword: 'r-', zoneid: zone.id, pagesize: 2, page: 2 })).backuprepository.map((r: Json) => r.id)).toEqual(ids.slice(2, 4));
      expect((await ok(admin, 'listBackupRepositories', { name: 'r-1' })).count).toBe(2);
      // The listing adds what the backups on it take (none yet).
      expect((await ok(admin, 'listBackupRepositories', { id: r1.id })).backuprepository).toEqual([{ ...r1, usedbytes: 0, backupcount: 0 }]);
      expect(await ok(admin, 'listBackupRepositories', { zoneid: randomUUID() })).toEqual({});

      const updated = await admin.call('updateBackupRepository', { id: r5.id, name: 'r-5b', mountopts: 'rw,noatime' });
      expect(inner(updated, 'updateBackupRepository').backuprepository).toEqual({ ...r5, name: 'r-5b', mountopts: 'rw,noatime' });
      const moved = await ok(admin, 'updateBackupRepository', { id: nfs.backuprepository.id, address: '10.0.0.5:/export' });
      expect(moved.backuprepository).toMatchObject({ address: '10.0.0.5:/export', name: 'r-nfs', type: 'nfs' });
      await refusedWithoutEvents('updateBackupRepository', { id: r5.id, name: 'R-NFS' }, 431, 'name');
      await refusedWithoutEvents('updateBackupRepository', { id: r5.id, name: '  ' }, 431, 'name');
      await refusedWithoutEvents('updateBackupRepository', { id: r5.id, address: 'relative/path' }, 431, 'address');
      await refusedWithoutEvents('updateBackupRepository', { id: nfs.backuprepository.id, address: '-o remount:/x' }, 431, 'address');
      await refusedWithoutEvents('updateBackupRepository', { id: r5.id, mountopts: 'x=$(reboot)' }, 431, 'mountopts');
      await refusedWithoutEvents('updateBackupRepository', {}, 431, 'id');
      await refusedWithoutEvents('updateBackupRepository', { id: 'nope' }, 431, 'id');
      await refusedWithoutEvents('updateBackupRepository', { id: randomUUID(), name: 'x' }, 431, 'id');

      // a zone with repositories is in use
      const inUse = await refusedWithoutEvents('deleteZone', { id: zone.id }, 536);
      expect(inUse).toContain('r-1');
      for (const id of ids) {
        const del = await admin.call('deleteBackupRepository', { id });
        expect(inner(del, 'deleteBackupRepository')).toEqual({ success: true, displaytext: expect.any(String) });
      }
      await refusedWithoutEvents('deleteBackupRepository', { id: r1.id }, 431, 'id');
      await refusedWithoutEvents('updateBackupRepository', { id: r1.id, name: 'again' }, 431, 'id');
      expect(await ok(admin, 'listBackupRepositories', { zoneid: zone.id })).toEqual({});
      expect(await ok(admin, 'deleteZone', { id: zone.id })).toEqual({ success: true, displaytext: expect.any(String) });
      // a deleted zone takes no repository
      await refusedWithoutEvents('addBackupRepository', { name: 'late', type: 'local', address: localDir(), zoneid: zone.id }, 431, 'zoneid');
    });

    it('refuses missing and malformed repository parameters with 431 naming them, appending nothing', async () => {
      const zone = await newZone('repo-params');
      const good = { name: 'x', type: 'local', address: localDir(), zoneid: zone.id };
      for (const missing of ['name', 'address', 'type', 'zoneid']) {
        const params: Params = { ...good };
        delete params[missing];
        await refusedWithoutEvents('addBackupRepository', params, 431, missing);
        await refusedWithoutEvents('addBackupRepository', { ...params, [missing]: '' }, 431, missing);
      }
      await refusedWithoutEvents('addBackupRepository', { ...good, type: 'smb' }, 431, 'type');
      await refusedWithoutEvents('addBackupRepository', { ...good, capacitybytes: -1 }, 431, 'capacitybytes');
      await refusedWithoutEvents('addBackupRepository', { ...good, capacitybytes: '1e12' }, 431, 'capacitybytes');
      await refusedWithoutEvents('addBackupRepository', { ...good, capacitybytes: '9007199254740993' }, 431, 'capacitybytes');
      await refusedWithoutEvents('addBackupRepository', { ...good, zoneid: 'zone-1' }, 431, 'zoneid');
      await refusedWithoutEvents('addBackupRepository', { ...good, zoneid: randomUUID() }, 431, 'zoneid');
      await refusedWithoutEvents('addBackupRepository', { ...good, name: '   ' }, 431, 'name');
      await refusedWithoutEvents('addBackupRepository', { ...good, address: 'x'.repeat(1025) }, 431, 'address');
      await refusedWithoutEvents('listBackupRepositories', { zoneid: 'x' }, 431, 'zoneid');
      await refusedWithoutEvents('deleteBackupRepository', {}, 431, 'id');
      await refusedWithoutEvents('deleteBackupRepository', { id: '42' }, 431, 'id');
      await refusedWithoutEvents('deleteBackupRepository', { id: randomUUID() }, 431, 'id');
    });

    const BAD_ADDRESSES: [type: string, address: string][] = [
      ['nfs', '-o remount'],
      ['nfs', '-o remount:/x'],
      ['nfs', '--bind:/x'],
      ['local', '-o'],
      ['local', '--bind'],
      ['nfs', 'host:/export backups'],
      ['nfs', 'host:/export\tx'],
      ['nfs', 'host:/export\n/etc'],
      ['nfs', 'host:/export\r\n'],
      ['nfs', 'host:/export\u0000x'],
      ['local', '/mnt/a\u0000'],
      ['nfs', 'host:/x;reboot'],
      ['local', '/mnt/x;reboot'],
      ['nfs', 'host:/$(reboot)'],
      ['local', '/mnt/$(id)'],
      ['cifs', '//server/share/$(id)'],
      ['nfs', 'host:/x`id`'],
      ['local', '/mnt/`id`'],
      ['nfs', 'host:/x|id'],
      ['nfs', 'host:/x&id'],
      ['nfs', 'host:/x>y'],
      ['nfs', "host:/x'y"],
      ['nfs', 'host:/x"y'],
      ['nfs', 'host:/a/../etc'],
      ['nfs', 'host:/..'],
      ['local', '/mnt/../etc'],
      ['local', '/mnt/strata/..'],
      ['cifs', '//server/share/../x'],
      ['cephfs', 'mon1:/a/../b'],
      ['local', 'relative/path'],
      ['local', './strata'],
      ['local', '../strata'],
      ['local', '~/strata'],
      ['local', '/'],
      ['nfs', 'host:relative'],
      ['nfs', 'host'],
      ['nfs', ':/export'],
      ['nfs', 'ho$t:/x'],
      ['nfs', 'host_name:/x'],
      ['cifs', '\\\\server\\share'],
      ['cifs', '//server'],
      ['cifs', '//server/-share'],
      ['cifs', '//server/sh@re'],
      ['cifs', 'server/share'],
      ['cifs', 'smb://server/share'],
      ['cephfs', ':/x'],
      ['cephfs', 'mon1'],
      ['cephfs', 'mon1:relative'],
      ['cephfs', 'mon1:99999:/x'],
      ['cephfs', 'mon1:0:/x'],
      ['cephfs', 'mon1,,mon2:/x'],
      ['cephfs', '-mon:/x'],
    ];

    it.each(BAD_ADDRESSES)('refuses a %s repository at %j with 431 naming address, appending nothing', async (type, address) => {
      const zones = await ok(admin, 'listZones', { name: 'address-rules' });
      const zoneid = zones.count ? zones.zone[0].id : (await newZone('address-rules')).id;
      await refusedWithoutEvents('addBackupRepository', { name: 'bad', type, address, zoneid }, 431, 'address');
      expect((await pg.query(`SELECT count(*)::int AS n FROM backup_repositories WHERE name = 'bad'`)).rows[0].n).toBe(0);
    });

    it('refuses bad mount options with 431 naming mountopts, appending nothing', async () => {
      const zone = await newZone('mountopts-rules');
      const base = { name: 'm', type: 'cifs', address: '//server/share', zoneid: zone.id };
      const bad = [
        '-o',
        '-o,rw',
        'rw,-o',
        'rw nosuid',
        'rw,\tro',
        'rw\nro',
        'rw\u0000',
        'rw,,ro',
        ',rw',
        'rw,',
        'a=b=c',
        'x=$(reboot)',
        'x=`id`',
        'rw;reboot',
        'rw|id',
        'rw&id',
        'key="v"',
        "key='v'",
        'key=a\\b',
        'password=p w',
        'password=$(reboot)',
        'password=`id`',
        'password=a;reboot',
        'password=',
        'password=a|b',
        'password=a&b',
        'password=a{b}',
        'password="quoted"',
        // credentials may hold ! # * ?, other options may not
        'opt=a!b',
        'opt=a#b',
        'opt=*',
        'opt=a?b',
        '=x',
        `k${'x'.repeat(64)}=v`,
      ];
      for (const mountopts of bad) await refusedWithoutEvents('addBackupRepository', { ...base, mountopts }, 431, 'mountopts');
      await refusedWithoutEvents('addBackupRepository', { ...base, mountopts: `a=${'x'.repeat(1030)}` }, 431, 'mountopts');
      expect(await ok(admin, 'listBackupRepositories', { zoneid: zone.id })).toEqual({});
    });
  });

  describe('imported backup offerings and async jobs', () => {
    it('imports asynchronously, lists, refuses what is in use or missing, and deletes', async () => {
      const zone = await newZone('import-zone');
      const bare = await newZone('no-repo-zone');
      const repo = await newRepo(zone.id, 'import-repo', { capacitybytes: 5_000_000 });
      const native = await newNative('import-native', { compress: true });

      const started = Date.now();
      const res = await admin.call('importBackupOffering', {
        name: 'silver',
        description: 'imported for the catalog test',
        zoneid: zone.id,
        externalid: native.id,
        allowuserdrivenbackups: true,
      });
      const answer = inner(res, 'importBackupOffering');
      expect(answer).toEqual({ jobid: expect.stringMatching(UUID) });
      const job = await admin.waitForJob(answer.jobid, 20_000, 100);
      expect(job).toMatchObject({ jobid: answer.jobid, cmd: 'importBackupOffering', jobstatus: 1, jobresultcode: 0, jobresulttype: 'object', jobprocstatus: 0, jobprogress: 100 });
      expect(job.created).toMatch(DATE);
      expect(job.completed).toMatch(DATE);
      expect(Date.parse(job.created.replace('+0000', 'Z'))).toBeGreaterThanOrEqual(Math.floor(started / 1000) * 1000 - 1000);
      const offering = job.jobresult.backupoffering;
      expect(offering).toEqual({
        id: expect.stringMatching(UUID),
        name: 'silver',
        description: 'imported for the catalog test',
        provider: 'strata',
        externalid: native.id,
        allowuserdrivenbackups: true,
        zoneid: zone.id,
        zonename: 'import-zone',
        created: expect.stringMatching(DATE),
        backupofferingdetails: { repositoryid: repo.id },
      });
      // the whole answer of queryAsyncJobResult
      const queried = inner(await admin.call('queryAsyncJobResult', { jobid: answer.jobid }), 'queryAsyncJobResult');
      expect(Object.keys(queried)).toEqual(expect.arrayContaining(['jobid', 'cmd', 'jobstatus', 'jobresultcode', 'jobresulttype', 'jobresult', 'jobprocstatus', 'created', 'completed']));

      const listed = await ok(admin, 'listBackupOfferings', { zoneid: zone.id });
      expect(listed).toEqual({ count: 1, backupoffering: [{ ...offering, created: expect.stringMatching(DATE) }] });
      expect((await ok(admin, 'listBackupOfferings', { id: offering.id })).count).toBe(1);
      expect(await ok(admin, 'listBackupOfferings', { zoneid: bare.id })).toEqual({});

      const jobs = await ok(admin, 'listAsyncJobs', { keyword: 'importBackupOffering' });
      expect(jobs.asyncjobs.map((j: Json) => j.jobid)).toContain(answer.jobid);
      expect(await ok(admin, 'listAsyncJobs', { startdate: '2999-01-01' })).toEqual({});

      // the provider's offerings are the native ones, shown as backupoffering
      const provider = await ok(admin, 'listBackupProviderOfferings', { zoneid: zone.id, keyword: 'import-native' });
      expect(provider).toEqual({
        count: 1,
        backupoffering: [{ id: native.id, name: 'import-native', description: expect.any(String), externalid: native.id, provider: 'strata', zoneid: zone.id, zonename: 'import-zone' }],
      });
      await refusedWithoutEvents('listBackupProviderOfferings', {}, 431, 'zoneid');
      await refusedWithoutEvents('listBackupProviderOfferings', { zoneid: randomUUID() }, 431, 'zoneid');

      // conflicts
      expect(await refusedWithoutEvents('deleteNativeBackupOffering', { id: native.id }, 536)).toContain('import-native');
      const terms = { name: 'bronze', description: 'd', zoneid: zone.id, externalid: native.id, allowuserdrivenbackups: false };
      await refusedWithoutEvents('importBackupOffering', { ...terms, zoneid: bare.id }, 431, 'zoneid');
      await refusedWithoutEvents('importBackupOffering', { ...terms, zoneid: randomUUID() }, 431, 'zoneid');
      await refusedWithoutEvents('importBackupOffering', { ...terms, externalid: randomUUID() }, 431, 'externalid');
      await refusedWithoutEvents('importBackupOffering', { ...terms, repositoryid: randomUUID() }, 431, 'repositoryid');
      const foreign = await newRepo(bare.id, 'foreign-repo');
      await refusedWithoutEvents('importBackupOffering', { ...terms, repositoryid: foreign.id }, 431, 'repositoryid');
      const deletedNative = await newNative('deleted-native');
      await ok(admin, 'deleteNativeBackupOffering', { id: deletedNative.id });
      await refusedWithoutEvents('importBackupOffering', { ...terms, externalid: deletedNative.id }, 431, 'externalid');
      for (const missing of CONTRACT.importBackupOffering.required) {
        const params: Params = { ...terms };
        delete params[missing];
        await refusedWithoutEvents('importBackupOffering', params, 431, missing);
      }
      await refusedWithoutEvents('importBackupOffering', { ...terms, name: '  ' }, 431, 'name');
      await refusedWithoutEvents('importBackupOffering', { ...terms, allowuserdrivenbackups: 'sometimes' }, 431, 'allowuserdrivenbackups');
      await refusedWithoutEvents('importBackupOffering', { ...terms, externalid: 'gold' }, 431, 'externalid');
      await refusedWithoutEvents('importBackupOffering', { ...terms, description: 'x'.repeat(4097) }, 431, 'description');
      await refusedWithoutEvents('listBackupOfferings', { zoneid: 'zone' }, 431, 'zoneid');
      await refusedWithoutEvents('deleteBackupOffering', {}, 431, 'id');
      await refusedWithoutEvents('deleteBackupOffering', { id: randomUUID() }, 431, 'id');
      await refusedWithoutEvents('queryAsyncJobResult', {}, 431, 'jobid');
      await refusedWithoutEvents('queryAsyncJobResult', { jobid: 'job-1' }, 431, 'jobid');
      await refusedWithoutEvents('queryAsyncJobResult', { jobid: randomUUID() }, 431, 'jobid');
      await refusedWithoutEvents('listAsyncJobs', { startdate: '2026-02-31' }, 431, 'startdate');
      await refusedWithoutEvents('listAsyncJobs', { startdate: 'yesterday' }, 431, 'startdate');

      // a repository an imported offering lives on still belongs to the zone, so the zone stays in use
      await refusedWithoutEvents('deleteZone', { id: zone.id }, 536);

      // deleting the imported offering releases the native one (through the dispatcher)
      expect(await ok(admin, 'deleteBackupOffering', { id: offering.id })).toEqual({ success: true, displaytext: expect.any(String) });
      expect(await ok(admin, 'listBackupOfferings', { zoneid: zone.id })).toEqual({});
      await refusedWithoutEvents('deleteBackupOffering', { id: offering.id }, 431, 'id');
      await until(
        async () => (await admin.call('deleteNativeBackupOffering', { id: native.id })).status === 200,
        15_000,
        'the native offering to be released',
        100,
      );
    });

    it('a User sees only its own async jobs; an Admin sees every job', async () => {
      const zone = await newZone('jobs-zone');
      await newRepo(zone.id, 'jobs-repo');
      const native = await newNative('jobs-native');
      const { jobid } = await ok(admin, 'importBackupOffering', { name: 'jobs', description: 'd', zoneid: zone.id, externalid: native.id, allowuserdrivenbackups: true });
      await admin.waitForJob(jobid, 20_000, 100);

      // No command a User may run is async yet, so the User's job is recorded the way commands record
      // theirs: an AsyncJobCreated event in the job's stream, through the same CommandHandler.
      const { openRuntime } = fromBuild<typeof RuntimeModule>('apps/cli/src/runtime.js');
      const { loadConfig } = fromBuild<typeof ConfigModule>('libs/config/src/index.js');
      const { asyncJobDecider, Streams } = fromBuild<typeof DomainModule>('libs/domain/src/index.js');
      const rt = await openRuntime(loadConfig(plane.env), 'catalog-e2e');
      const ownJob = randomUUID();
      try {
        await rt.handler.handle(Streams.asyncJob(ownJob), asyncJobDecider, {
          type: 'CreateAsyncJob',
          data: { jobId: ownJob, command: 'createBackup', userId: userKeys.userid, instanceType: 'Backup', instanceId: randomUUID(), at: new Date() },
        });
      } finally {
        await rt.close();
      }
      const own = await until(
        async () => {
          const r = await user.call('queryAsyncJobResult', { jobid: ownJob });
          return r.status === 200 ? inner(r, 'queryAsyncJobResult') : null;
        },
        10_000,
        'the User job to be projected',
        50,
      );
      expect(own).toMatchObject({ jobid: ownJob, cmd: 'createBackup', userid: userKeys.userid, jobstatus: 0, jobprogress: 0, created: expect.stringMatching(DATE) });
      expect(own.completed).toBeUndefined();
      expect(await ok(user, 'listAsyncJobs')).toEqual({ count: 1, asyncjobs: [expect.objectContaining({ jobid: ownJob })] });
      // the Admin's job is invisible to the User (as if it did not exist) ...
      await refused(user, 'queryAsyncJobResult', { jobid }, 431, 'jobid');
      // ... and the Admin sees both
      expect((await ok(admin, 'queryAsyncJobResult', { jobid: ownJob })).jobid).toBe(ownJob);
      const all = await ok(admin, 'listAsyncJobs', { pagesize: 500 });
      expect(all.asyncjobs.map((j: Json) => j.jobid)).toEqual(expect.arrayContaining([jobid, ownJob]));
    });

    it('an import whose pinned repository is deleted before the job runs fails with jobstatus 2 and a 4xx errorcode', async () => {
      // A plane of its own without the dispatcher (`strata api --only-api` and `strata projector`), so the
      // import job runs only when `strata dispatcher` starts, after the repository is gone.
      const db = await createTestDatabase();
      const env = testEnv(db.url, { STRATA_API_PORT: '0', STRATA_API_HOST: '127.0.0.1' });
      const processes: StrataProcess[] = [];
      try {
        const migrate = await runStrata(['migrate'], env);
        if (migrate.code !== 0) throw new Error(`strata migrate failed: ${migrate.output}`);
        const api = startStrata(['api', '--only-api'], env);
        processes.push(api, startStrata(['projector'], env));
        const endpoint = await until(async () => /listening on (\S+)/.exec(api.output())?.[1], 30_000, 'strata api --only-api to listen', 50);
        const keys = await runStrata(['keys', 'create', '--role', 'Admin', '--name', 'racer', '--json'], env);
        if (keys.code !== 0) throw new Error(`strata keys create failed: ${keys.output}`);
        const { apikey, secretkey } = JSON.parse(keys.stdout) as { apikey: string; secretkey: string };
        const client = new ApiClient(baseUrl(endpoint), apikey, secretkey);

        const zone = (await ok(client, 'createZone', { name: 'race' })).zone;
        const pinned = (await ok(client, 'addBackupRepository', { name: 'pinned', type: 'local', address: localDir(), zoneid: zone.id })).backuprepository;
        await ok(client, 'addBackupRepository', { name: 'spare', type: 'local', address: localDir(), zoneid: zone.id });
        const native = (await ok(client, 'createNativeBackupOffering', { name: 'race-native' })).nativebackupoffering;
        const { jobid } = await ok(client, 'importBackupOffering', {
          name: 'race-offering',
          description: 'd',
          zoneid: zone.id,
          externalid: native.id,
          allowuserdrivenbackups: false,
          repositoryid: pinned.id,
        });
        const pending = await ok(client, 'queryAsyncJobResult', { jobid });
        expect(pending).toMatchObject({ jobid, cmd: 'importBackupOffering', jobstatus: 0, jobresultcode: 0, jobprogress: 0 });
        expect(pending.jobresult).toBeUndefined();
        expect(pending.completed).toBeUndefined();
        // an offering still being imported is neither listed nor deletable
        expect(await ok(client, 'listBackupOfferings', { zoneid: zone.id })).toEqual({});
        const offeringId = pending.jobinstanceid as string;
        expect(offeringId).toMatch(UUID);
        expectError(await client.call('deleteBackupOffering', { id: offeringId }), 'deleteBackupOffering', 536);

        await ok(client, 'deleteBackupRepository', { id: pinned.id });
        processes.push(startStrata(['dispatcher'], env));
        const failed = await client.waitForJob(jobid, 30_000, 100);
        expect(failed).toMatchObject({ jobid, jobstatus: 2, jobresultcode: 431, jobresulttype: 'object' });
        expect(failed.jobresult).toEqual({ errorcode: 431, errortext: expect.stringContaining(pinned.id) });
        expect(failed.completed).toMatch(DATE);
        expect(await ok(client, 'listBackupOfferings', { zoneid: zone.id })).toEqual({});
        // the failed import never linked the native offering, which can go at once
        expect(await ok(client, 'deleteNativeBackupOffering', { id: native.id })).toMatchObject({ success: true });
        // and the failed offering can be deleted
        expect(await ok(client, 'deleteBackupOffering', { id: offeringId })).toMatchObject({ success: true });
      } finally {
        for (const p of processes) p.child.kill('SIGTERM');
        await Promise.all(processes.map((p) => p.exited));
        await db.drop();
      }
    });
  });

  describe('settings', () => {
    it('listConfigurations lists every setting of API.md with its default, and pages', async () => {
      const all = await ok(admin, 'listConfigurations');
      expect(all.count).toBe(SETTINGS_OF_API_MD.length);
      expect(all.configuration.map((c: Json) => c.name).sort()).toEqual(SETTINGS_OF_API_MD.map(([n]) => n).sort());
      for (const [name, defaultValue, scope] of SETTINGS_OF_API_MD) {
        const c = all.configuration.find((x: Json) => x.name === name);
        expect(c).toMatchObject({ name, value: defaultValue, defaultvalue: defaultValue, description: expect.any(String), isdynamic: expect.any(Boolean) });
        expect(c.zoneid).toBeUndefined();
        // CloudStack shows a setting's own scope when no zone is asked for
        if (scope) expect({ name, scope: c.scope }).toEqual({ name, scope });
        else expect(['zone', 'global']).toContain(c.scope);
      }
      const p1 = await ok(admin, 'listConfigurations', { pagesize: 10 });
      const p3 = await ok(admin, 'listConfigurations', { pagesize: 10, page: 3 });
      expect(p1.count).toBe(SETTINGS_OF_API_MD.length);
      expect(p1.configuration).toHaveLength(10);
      expect(p3.configuration).toHaveLength(SETTINGS_OF_API_MD.length - 20);
      expect([...p1.configuration, ...(await ok(admin, 'listConfigurations', { pagesize: 10, page: 2 })).configuration, ...p3.configuration]).toEqual(all.configuration);
      const compression = await ok(admin, 'listConfigurations', { keyword: 'compression', pagesize: 3 });
      expect(compression.count).toBe(SETTINGS_OF_API_MD.filter(([n]) => n.includes('compression')).length);
      expect(compression.configuration).toHaveLength(3);
      expect((await ok(admin, 'listConfigurations', { name: 'backup.chain.size' })).configuration[0].name).toBe('backup.chain.size');
      expect((await ok(admin, 'listConfigurations', { category: 'validation' })).count).toBe(10);
      expect(await ok(admin, 'listConfigurations', { name: 'no.such.setting' })).toEqual({});
    });

    it('updateConfiguration sets global and zone values; listConfigurations with zoneid shows the zone value over the global one', async () => {
      const zone = await newZone('settings-zone');
      const other = await newZone('settings-other');
      const g = await admin.call('updateConfiguration', { name: 'backup.chain.size', value: '12' });
      expect(Object.keys(inner(g, 'updateConfiguration'))).toEqual(['configuration']);
      expect(inner(g, 'updateConfiguration').configuration).toMatchObject({ name: 'backup.chain.size', value: '12', defaultvalue: '8' });
      expect(inner(g, 'updateConfiguration').configuration.zoneid).toBeUndefined();
      const z = await ok(admin, 'updateConfiguration', { name: 'backup.chain.size', value: ' 3 ', zoneid: zone.id });
      expect(z.configuration).toMatchObject({ name: 'backup.chain.size', value: '3', scope: 'zone', zoneid: zone.id });
      await ok(admin, 'updateConfiguration', { name: 'nas.backup.integrity.check', value: 'TRUE', zoneid: zone.id });
      await ok(admin, 'updateConfiguration', { name: 'backup.compression.timeout', value: '600' });

      const global = await ok(admin, 'listConfigurations', { name: 'backup.chain.size' });
      expect(global.configuration).toEqual([expect.objectContaining({ name: 'backup.chain.size', value: '12' })]);
      const inZone = await ok(admin, 'listConfigurations', { zoneid: zone.id });
      const zoneScoped = SETTINGS_OF_API_MD.filter(([, , s]) => s === 'zone').map(([n]) => n);
      const globalOnly = SETTINGS_OF_API_MD.filter(([, , s]) => s === 'global').map(([n]) => n);
      const names = inZone.configuration.map((c: Json) => c.name);
      expect(names).toEqual(expect.arrayContaining(zoneScoped));
      for (const n of globalOnly) expect(names).not.toContain(n);
      expect(inZone.count).toBe(names.length);
      for (const c of inZone.configuration) expect(c).toMatchObject({ scope: 'zone', zoneid: zone.id });
      const byName = (list: Json, n: string) => list.configuration.find((c: Json) => c.name === n);
      expect(byName(inZone, 'backup.chain.size').value).toBe('3');
      expect(byName(inZone, 'nas.backup.integrity.check').value).toBe('true');
      expect(byName(inZone, 'knib.timeout').value).toBe('43200');
      // another zone inherits the global value
      const inOther = await ok(admin, 'listConfigurations', { zoneid: other.id, name: 'backup.chain.size' });
      expect(inOther.configuration).toEqual([expect.objectContaining({ value: '12', zoneid: other.id })]);
      expect(byName(await ok(admin, 'listConfigurations'), 'backup.compression.timeout').value).toBe('600');
      expect(byName(await ok(admin, 'listConfigurations'), 'nas.backup.integrity.check').value).toBe('false');

      // errors: 431 naming the parameter, and no event
      const u = 'updateConfiguration';
      await refusedWithoutEvents(u, { value: '1' }, 431, 'name');
      await refusedWithoutEvents(u, { name: 'no.such.setting', value: '1' }, 431, 'name');
      await refusedWithoutEvents(u, { name: 'backup.chain.size', value: '1001' }, 431, 'value');
      await refusedWithoutEvents(u, { name: 'backup.chain.size', value: '-2' }, 431, 'value');
      await refusedWithoutEvents(u, { name: 'backup.chain.size', value: '2.5' }, 431, 'value');
      await refusedWithoutEvents(u, { name: 'backup.chain.size' }, 431, 'value');
      await refusedWithoutEvents(u, { name: 'knib.timeout', value: '0' }, 431, 'value');
      await refusedWithoutEvents(u, { name: 'backup.compression.task.enabled', value: 'yes' }, 431, 'value');
      await refusedWithoutEvents(u, { name: 'backup.compression.task.enabled', value: '1' }, 431, 'value');
      await refusedWithoutEvents(u, { name: 'backup.compression.minimum.free.storage', value: 'lots' }, 431, 'value');
      await refusedWithoutEvents(u, { name: 'nas.infra.backup.location', value: 'relative/dir' }, 431, 'value');
      await refusedWithoutEvents(u, { name: 'backup.compression.timeout', value: '10', zoneid: zone.id }, 431, 'zoneid');
      await refusedWithoutEvents(u, { name: 'backup.chain.size', value: '4', zoneid: randomUUID() }, 431, 'zoneid');
      await refusedWithoutEvents(u, { name: 'backup.chain.size', value: '4', zoneid: 'zone' }, 431, 'zoneid');
      // hostid: only for a setting with a host override ("global (host override)"), of a known host, without zoneid
      const perHost = 'backup.compression.max.concurrent.compressions.per.host';
      await refusedWithoutEvents(u, { name: 'backup.compression.timeout', value: '10', hostid: randomUUID() }, 431, 'hostid');
      await refusedWithoutEvents(u, { name: 'backup.chain.size', value: '4', hostid: randomUUID() }, 431, 'hostid');
      await refusedWithoutEvents(u, { name: perHost, value: '1', hostid: randomUUID() }, 431, 'hostid');
      await refusedWithoutEvents(u, { name: perHost, value: '1', hostid: randomUUID(), zoneid: zone.id }, 431, 'hostid');
      await refusedWithoutEvents('listConfigurations', { hostid: randomUUID() }, 431, 'hostid');
      expect(byName(await ok(admin, 'listConfigurations', { name: perHost }), perHost)).toMatchObject({ scope: 'global', hostoverride: true });
      await refusedWithoutEvents('listConfigurations', { zoneid: randomUUID() }, 431, 'zoneid');
      await refusedWithoutEvents('listConfigurations', { zoneid: 'z' }, 431, 'zoneid');
      // a deleted zone is an unknown zone
      const gone = await newZone('settings-gone');
      await ok(admin, 'deleteZone', { id: gone.id });
      await refusedWithoutEvents(u, { name: 'backup.chain.size', value: '4', zoneid: gone.id }, 431, 'zoneid');
      // the same value again appends nothing
      const before = await eventCount();
      await ok(admin, u, { name: 'backup.chain.size', value: '12' });
      expect(await eventCount()).toBe(before);
    });
  });

  describe('secrets', () => {
    const PASSWORD = 'S3cretPw!x';
    const PASSWORD_2 = 'N3wer#Pass*2';
    const PASSPHRASE = 'Luks-Passphrase-7f3a9';
    const PASSPHRASE_ZONE = 'Zone_Passphrase_9c2e';

    it('repository credentials, the encryption passphrase and API secret keys are never shown nor stored in clear', async () => {
      secretsToHide.push(PASSWORD, PASSWORD_2, PASSPHRASE, PASSPHRASE_ZONE);
      const zone = await newZone('secret-zone');
      const added = await admin.call('addBackupRepository', {
        name: 'smb',
        type: 'cifs',
        address: '//fileserver/backups',
        zoneid: zone.id,
        mountopts: `vers=3.0,username=bk,password=${PASSWORD}`,
      });
      if (added.status !== 200) throw new Error(`addBackupRepository with credentials failed: ${show(added)}`);
      const repo = inner(added, 'addBackupRepository').backuprepository;
      expect(repo.mountopts).toBe('vers=3.0,username=bk');
      const listed = await admin.call('listBackupRepositories', { id: repo.id });
      expect(inner(listed, 'listBackupRepositories').backuprepository[0].mountopts).toBe('vers=3.0,username=bk');
      const updated = await admin.call('updateBackupRepository', { id: repo.id, mountopts: `vers=3.1.1,username=bk,password=${PASSWORD_2},sec=ntlmssp` });
      expect(inner(updated, 'updateBackupRepository').backuprepository.mountopts).toBe('vers=3.1.1,username=bk,sec=ntlmssp');
      for (const res of [added, listed, updated]) {
        const text = JSON.stringify(res.body);
        expect(text).not.toContain(PASSWORD);
        expect(text).not.toContain(PASSWORD_2);
        expect(text).not.toContain('password');
      }

      const g = await admin.call('updateConfiguration', { name: 'nas.backup.encryption.passphrase', value: PASSPHRASE });
      expect(inner(g, 'updateConfiguration').configuration).toMatchObject({ name: 'nas.backup.encryption.passphrase', value: '******', defaultvalue: '' });
      const zoned = await admin.call('updateConfiguration', { name: 'nas.backup.encryption.passphrase', value: PASSPHRASE_ZONE, zoneid: zone.id });
      expect(inner(zoned, 'updateConfiguration').configuration).toMatchObject({ value: '******', zoneid: zone.id });
      const answers = [
        g,
        zoned,
        await admin.call('listConfigurations', { name: 'nas.backup.encryption.passphrase' }),
        await admin.call('listConfigurations', { zoneid: zone.id }),
        await admin.call('listConfigurations'),
      ];
      expect(inner(answers[2], 'listConfigurations').configuration[0].value).toBe('******');
      for (const res of answers) {
        expect(JSON.stringify(res.body)).not.toContain(PASSPHRASE);
        expect(JSON.stringify(res.body)).not.toContain(PASSPHRASE_ZONE);
      }
      // a refused value is not echoed either (it may be a mistyped passphrase)
      const badZone = await admin.call('updateConfiguration', { name: 'nas.backup.encryption.passphrase', value: PASSPHRASE, zoneid: randomUUID() });
      expect(badZone.status).toBe(431);
      expect(JSON.stringify(badZone.body)).not.toContain(PASSPHRASE);

      // nowhere in the database in clear: events (data and metadata) and every read model
      const tables = await wholeDatabase();
      expect(Object.keys(tables)).toEqual(expect.arrayContaining(['events', 'zones', 'backup_repositories', 'api_users', 'configuration_values', 'async_jobs']));
      for (const [table, text] of Object.entries(tables)) {
        for (const secret of secretsToHide) {
          if (text.includes(secret)) throw new Error(`table ${table} holds the secret ${secret.slice(0, 4)}... in clear`);
        }
      }
      // ... while what is not secret is there (the search does look at the right data)
      expect(tables.events).toContain('vers=3.0,username=bk');
      expect(tables.events).toContain(plane.admin.apikey);
      expect(tables.api_users).toContain(userKeys.apikey);
      // ... and the secrets are kept, encrypted
      const stored = (await pg.query(`SELECT encrypted_credentials FROM backup_repositories WHERE id = $1`, [repo.id])).rows[0].encrypted_credentials;
      expect(stored).toMatch(/^v1:/);
      const passphrases = (await pg.query(`SELECT value FROM configuration_values WHERE name = 'nas.backup.encryption.passphrase'`)).rows;
      expect(passphrases).toHaveLength(2);
      for (const row of passphrases) expect(row.value).toMatch(/^v1:/);
      const apiUsers = (await pg.query(`SELECT encrypted_secret_key FROM api_users`)).rows;
      for (const row of apiUsers) expect(row.encrypted_secret_key).toMatch(/^v1:/);

      // and not in the API process's output
      const output = plane.api.output();
      expect(output).toContain('listening on');
      for (const secret of secretsToHide) {
        if (output.includes(secret)) throw new Error(`the API output holds the secret ${secret.slice(0, 4)}...`);
      }
    });
  });

  describe('roles', () => {
    it('a User lists zones and offerings, sees only the non-admin commands, and gets 432 for Admin-only ones', async () => {
      const zone = await newZone('user-visible');
      const zones = await ok(user, 'listZones', { id: zone.id });
      expect(zones).toEqual({ count: 1, zone: [{ id: zone.id, name: 'user-visible' }] });
      expect(await ok(user, 'listBackupOfferings', { zoneid: zone.id })).toEqual({});
      expect((await ok(user, 'listBackupOfferings')).count ?? 0).toBe((await ok(admin, 'listBackupOfferings')).count ?? 0);

      const mine = await ok(user, 'listApis');
      const names: string[] = mine.api.map((a: Json) => a.name);
      expect(mine.count).toBe(names.length);
      expect(names).toEqual(expect.arrayContaining(FOR_USERS));
      for (const c of ADMIN_ONLY) expect(names).not.toContain(c);
      const everything: string[] = (await ok(admin, 'listApis')).api.map((a: Json) => a.name);
      for (const n of names) expect(everything).toContain(n);
      await refused(user, 'listApis', { name: 'createZone' }, 431, 'name');

      const zoneId = zone.id;
      const sample: Record<string, Params> = {
        createZone: { name: 'mine' },
        deleteZone: { id: zoneId },
        createNativeBackupOffering: { name: 'mine' },
        listNativeBackupOfferings: {},
        deleteNativeBackupOffering: { id: randomUUID() },
        importBackupOffering: { name: 'n', description: 'd', zoneid: zoneId, externalid: randomUUID(), allowuserdrivenbackups: true },
        deleteBackupOffering: { id: randomUUID() },
        listBackupProviderOfferings: { zoneid: zoneId },
        addBackupRepository: { name: 'r', type: 'local', address: localDir(), zoneid: zoneId },
        listBackupRepositories: {},
        updateBackupRepository: { id: randomUUID(), name: 'x' },
        deleteBackupRepository: { id: randomUUID() },
        listConfigurations: {},
        updateConfiguration: { name: 'backup.chain.size', value: '2' },
      };
      expect(Object.keys(sample).sort()).toEqual([...ADMIN_ONLY].sort());
      const before = await eventCount();
      for (const [command, params] of Object.entries(sample)) {
        // 432 comes before the parameters are looked at: with none at all too
        expect(await refused(user, command, params, 432)).toContain('not available for user');
        await refused(user, command, {}, 432);
      }
      expect(await eventCount()).toBe(before);
      expect((await ok(admin, 'listZones', { id: zoneId })).count).toBe(1);
    });
  });

  describe('listApis', () => {
    it('lists every catalog command with isasync and its parameters, required flags included', async () => {
      const all = await ok(admin, 'listApis');
      expect(all.count).toBe(all.api.length);
      const apis = new Map<string, Json>(all.api.map((a: Json) => [a.name, a]));
      for (const [command, contract] of Object.entries(CONTRACT)) {
        const api = apis.get(command);
        if (!api) throw new Error(`listApis does not list ${command}`);
        expect(Object.keys(api).sort()).toEqual(['description', 'isasync', 'name', 'params', 'response']);
        expect({ command, isasync: api.isasync }).toEqual({ command, isasync: contract.isasync });
        expect(api.description).toEqual(expect.any(String));
        expect(api.response).toEqual([{ name: expect.any(String) }]);
        const params = new Map<string, Json>(api.params.map((p: Json) => [p.name, p]));
        expect({ command, params: [...params.keys()].sort() }).toEqual({ command, params: [...contract.required, ...contract.optional].sort() });
        for (const p of api.params) {
          expect(p).toMatchObject({ name: expect.any(String), type: expect.any(String), required: expect.any(Boolean), description: expect.any(String) });
          expect({ command, param: p.name, required: p.required }).toEqual({ command, param: p.name, required: contract.required.includes(p.name) });
        }
        // the same, asked by name (case-insensitively)
        const one = await ok(admin, 'listApis', { name: command.toUpperCase() });
        expect(one).toEqual({ count: 1, api: [api] });
      }
      expect(apis.get('importBackupOffering').response).toEqual([{ name: 'backupoffering' }]);
      const types = (command: string) => Object.fromEntries(apis.get(command).params.map((p: Json) => [p.name, p.type]));
      expect(types('addBackupRepository')).toMatchObject({ zoneid: 'uuid', capacitybytes: 'long', type: 'string', name: 'string' });
      expect(types('createNativeBackupOffering')).toMatchObject({ compress: 'boolean', backupchainsize: 'integer', validationsteps: 'list' });
      expect(types('listZones')).toMatchObject({ page: 'integer', pagesize: 'integer', keyword: 'string' });
      expect(apis.get('addBackupRepository').params.find((p: Json) => p.name === 'type').description).toMatch(/nfs.*cifs.*cephfs.*local/);

      // listApis pages like every list
      const page = await ok(admin, 'listApis', { pagesize: 5, page: 2 });
      expect(page.count).toBe(all.count);
      expect(page.api.map((a: Json) => a.name)).toEqual(all.api.slice(5, 10).map((a: Json) => a.name));
      await refused(admin, 'listApis', { name: 'noSuchCommand' }, 431, 'name');
      const unknown = await admin.call('noSuchCommand');
      expect(unknown.status).toBe(432);
      expect(Object.keys(unknown.body)).toEqual(['errorresponse']);
    });
  });

  describe('required parameters', () => {
    it('every required parameter of every command, missing or empty, is a 431 naming it, appending nothing', async () => {
      const apis = new Map<string, Json>((await ok(admin, 'listApis')).api.map((a: Json) => [a.name, a]));
      const wellFormed = (p: Json): string =>
        p.type === 'uuid' ? randomUUID() : p.type === 'boolean' ? 'true' : p.type === 'integer' || p.type === 'long' ? '1' : p.name === 'type' ? 'local' : p.name === 'address' ? '/mnt/x' : 'x';
      let checked = 0;
      for (const [command, contract] of Object.entries(CONTRACT)) {
        const params: Json[] = apis.get(command).params;
        for (const missing of contract.required) {
          const others = Object.fromEntries(params.filter((p) => p.required && p.name !== missing).map((p) => [p.name, wellFormed(p)]));
          await refusedWithoutEvents(command, others, 431, missing);
          await refusedWithoutEvents(command, { ...others, [missing]: '' }, 431, missing);
          checked++;
        }
      }
      expect(checked).toBe(Object.values(CONTRACT).reduce((n, c) => n + c.required.length, 0));
    });
  });

  describe('robustness', () => {
    it('survives hundreds of random signed requests to the real commands without a 5xx', async () => {
      const seed = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : Date.now() % 2 ** 31;
      const random = prng(seed);
      const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)];
      const int = (n: number) => Math.floor(random() * n);
      const fuzzUuid = () =>
        'xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx'.replace(/[xy]/g, (c) => (c === 'x' ? int(16) : (8 + int(4))).toString(16));

      const apis: { name: string; params: { name: string; type: string; required: boolean }[] }[] = (await ok(admin, 'listApis')).api;
      const settingNames = SETTINGS_OF_API_MD.map(([n]) => n);
      const values: (() => string)[] = [
        () => '',
        () => ' ',
        () => 'A'.repeat(256 + int(4000)),
        () => '𝔘ñí©ødé✓'.repeat(1 + int(400)),
        () => "'; DROP TABLE events; --",
        () => '" OR 1=1 --',
        () => "x' OR '1'='1",
        () => '%_\\%',
        () => '$(reboot)',
        () => '`id`',
        () => '; rm -rf / #',
        () => '| cat /etc/passwd',
        () => '&& echo pwned',
        () => '../../../../etc/passwd',
        () => 'a\u0000b',
        () => '\u0000',
        () => 'line\nbreak',
        () => '\r\n\t',
        () => '\u001b[31mred',
        () => '\u202eevil\u2028',
        () => '\uFEFF',
        () => pick(['-1', '-2', '0', '-0', '1', '1000', '1001', '2147483647', '2147483648', '-2147483649', '9007199254740991', '9007199254740993', '99999999999999999999999', '1e308', '1.5', 'NaN', 'Infinity', '0x10', '+7', '١٢٣']),
        () => fuzzUuid(),
        () => fuzzUuid().toUpperCase(),
        () => '00000000-0000-0000-0000-000000000000',
        () => pick(['not-a-uuid', fuzzUuid().replace(/-/g, ''), `${fuzzUuid()}0`, ` ${fuzzUuid()}`, `${fuzzUuid()}\n`, fuzzUuid().slice(1), '{' + fuzzUuid() + '}']),
        () => pick(['true', 'false', 'TRUE', 'False', 'yes', '1', 'on']),
        () => pick(['2026-02-31', '9999-12-31T23:59:59+0000', '0000-01-01', '2026-13-01', '2026-11-22 10:00:00', '2026-11-22T10:00:00Z', '1970-01-01T00:00:00-2359']),
        () => pick(['nfs', 'cifs', 'cephfs', 'local', 'smb', 'zstd', 'zlib', 'lz4', 'screenshot,reboot', 'wait_for_boot', ',,,', 'a,b,,c']),
        () => pick(settingNames),
        () => pick(['host:/export', '//server/share', 'mon1:/x', '/mnt/strata', '-o remount', '/', 'host:/a/../b']),
        () => pick(['vers=3.0,password=x', 'rw', '-o,rw', 'a=b=c', 'x=$(id)']),
        () => pick(['{"a":1}', '[]', '__proto__', 'constructor', '%s%s%n', '${7*7}', '{{7*7}}', '<script>alert(1)</script>']),
        () => ','.repeat(int(300)),
      ];
      const junkNames = ['foo', '__proto__', 'constructor', 'toString', 'hasOwnProperty', 'details[0].key', 'details[0].__proto__', 'id[1].x', 'x'.repeat(201), 'ÿname', 'a b', 'page', 'pagesize', 'keyword'];

      interface Planned {
        command: string;
        params: Record<string, string>;
        method: 'GET' | 'POST';
      }
      const planned: Planned[] = [];
      for (let i = 0; i < 320; i++) {
        const api = pick(apis);
        const params: Record<string, string> = {};
        const n = int(7);
        for (let k = 0; k < n; k++) {
          let name = api.params.length > 0 && random() < 0.75 ? pick(api.params).name : pick(junkNames);
          if (random() < 0.1) name = name.toUpperCase();
          params[name] = pick(values)();
        }
        // sometimes every required parameter with a plausible value, so the commands run past validation
        if (random() < 0.35) {
          for (const p of api.params) {
            if (p.name in params || (random() < 0.5 && !p.required)) continue;
            params[p.name] = p.type === 'uuid' ? fuzzUuid() : p.type === 'boolean' ? 'true' : p.type === 'integer' || p.type === 'long' ? String(int(10)) : pick(values)();
          }
        }
        const size = Object.entries(params).reduce((a, [k, v]) => a + encodeURIComponent(k).length + encodeURIComponent(v).length, 0);
        planned.push({ command: api.name, params, method: size > 30_000 || random() < 0.3 ? 'POST' : 'GET' });
      }

      const statuses = new Map<number, number>();
      let next = 0;
      const failures: string[] = [];
      const worker = async () => {
        while (next < planned.length) {
          const index = next++;
          const { command, params, method } = planned[index];
          const res = await admin.call(command, params, { method });
          statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
          const describe = `#${index} ${method} ${command} ${JSON.stringify(params).slice(0, 300)} -> ${show(res)}`;
          const problems: string[] = [];
          if (res.status >= 500) problems.push('5xx');
          if (res.headers.get('content-type') !== 'application/json; charset=UTF-8') problems.push('not JSON');
          const keys = JSON.stringify(Object.keys(res.body));
          if (res.status === 401) problems.push('signature refused');
          if (typeof res.body.text === 'string') problems.push('body is not JSON');
          else if (keys !== JSON.stringify([envelope(command)])) problems.push('envelope');
          else {
            const inside = res.body[envelope(command)];
            if (res.status !== 200 && (inside.errorcode !== res.status || typeof inside.errortext !== 'string')) problems.push('error body');
          }
          if (problems.length) failures.push(`${problems.join(', ')}: ${describe}`);
        }
      };
      await Promise.all([worker(), worker(), worker(), worker()]);
      const sent = [...statuses.values()].reduce((a, b) => a + b, 0);
      if (failures.length > 0) {
        throw new Error(`fuzz seed ${seed} (replay with FUZZ_SEED=${seed}): ${failures.length} of ${sent} requests failed:\n${failures.slice(0, 15).join('\n')}`);
      }
      expect(sent).toBeGreaterThanOrEqual(300);
      // some requests must have got through validation, or the fuzz tested only the parameter checks
      expect(statuses.get(200) ?? 0).toBeGreaterThan(0);
      console.log(
        `fuzz seed ${seed}: ${sent} requests, statuses ${JSON.stringify(Object.fromEntries([...statuses].sort()))}`,
      );

      // still alive, and nothing was dropped
      expect((await ok(admin, 'listZones', { name: 'pz-01' })).count).toBe(1);
      const events = await pg.query(`SELECT to_regclass('public.events') AS t`);
      expect(events.rows[0].t).toBe('events');
    });
  });
});
