import { randomBytes } from 'node:crypto';
import { Client } from 'pg';
import { ApiClient } from '../support/api-client';
import { createTestDomain, TestDomain, useLibvirtCleanup, writePattern } from '../support/libvirt';
import { agentEnv, assignWhenListed, createBackupCatalog, okCaller } from '../support/backup-fixture';
import { RunningPlane, startManagementPlane } from '../support/management-plane';
import { runStrata, startStrata, StrataProcess, until } from '../support/strata-process';

interface Backup {
  id: string;
  status: string;
  intervaltype: string;
  isolated: boolean;
}

/** One schedule fire as a management instance logged it (lifecycle.ts, requestScheduledBackup). */
interface Fire {
  instance: 'A' | 'B';
  level: string;
  scheduleId: string;
  fireId: string;
  due: number;
  backupId: string | null;
  skipped: string | null;
}

/** Fires are every EVERY_MS (the test-only STRATA_TEST_SCHEDULE_EVERY_MS) instead of at their cron times. */
const EVERY_MS = 2000;
const GiB = 1024;

function firesIn(instance: 'A' | 'B', output: string): Fire[] {
  const re = /^\S+ (\w+)\s+lifecycle: schedule (\S+) of VM \S+: fire (\S+) \(due ([^)]+)\)(?:: backup (\S+) \(\w+\) requested| skipped: (.*))$/gm;
  return [...output.matchAll(re)].map((m) => ({ instance, level: m[1], scheduleId: m[2], fireId: m[3], due: Date.parse(m[4]), backupId: m[5] ?? null, skipped: m[6] ?? null }));
}

/**
 * Backup schedules on a management plane of two instances (issue 6): two `strata api` processes, each
 * with its dispatcher and lifecycle worker (the BullMQ job schedulers), on one PostgreSQL and one Redis.
 * Cron times cannot be waited for, so both run with STRATA_TEST_SCHEDULE_EVERY_MS: every schedule's job
 * scheduler fires every EVERY_MS instead (the cron patterns and time zones are unit-tested in
 * lifecycle.spec.ts, with BullMQ's own repeat strategy). Each fire is handled by one instance only, no
 * period fires twice, each fire gives at most one backup; a fire while the VM's backup still runs (held
 * back by the zone bandwidth limit) is skipped with a warning and gives none.
 */
describe('backup schedules on two management instances (BullMQ job schedulers, test interval)', () => {
  useLibvirtCleanup();
  let plane: RunningPlane;
  let second: StrataProcess;
  let apiA: ApiClient;
  let apiB: ApiClient;
  let agent: StrataProcess;
  let domain: TestDomain;
  let pg: Client;
  let zoneId: string;
  let repoId: string;
  const hostName = `strata-e2e-${randomBytes(3).toString('hex')}`;
  const okA = okCaller(() => apiA);
  const okB = okCaller(() => apiB);
  const allBackups = async () => [
    ...(((await okA('listBackups', { virtualmachineid: domain.uuid })).backup as Backup[] | undefined) ?? []),
    ...(((await okA('listBackups', { virtualmachineid: domain.uuid, status: 'Expunged' })).backup as Backup[] | undefined) ?? []),
  ];
  const fires = (scheduleId: string) => [...firesIn('A', plane.api.output()), ...firesIn('B', second.output())].filter((f) => f.scheduleId === scheduleId);
  const logs = () => `instance A: ${plane.api.output().slice(-2500)}\ninstance B: ${second.output().slice(-2500)}`;

  /** The VM's backup events in stream order: which backups were requested and when each ended. */
  async function backupEvents(): Promise<{ type: string; backupId: string; scheduleId: string | null; requestedAt: string | null; intervalType: string | null }[]> {
    const { rows } = await pg.query(
      `SELECT type, data->>'backupId' AS "backupId", metadata->>'scheduleId' AS "scheduleId", data->>'requestedAt' AS "requestedAt", data->>'intervalType' AS "intervalType"
         FROM events WHERE stream_id = $1 AND type IN ('BackupRequested', 'BackupCompleted', 'BackupFailed') ORDER BY stream_revision`,
      [`vmBackups-${domain.uuid}`],
    );
    return rows;
  }

  /** Waits until no backup runs and no removal waits or runs. */
  async function settle(): Promise<void> {
    await until(async () => (await allBackups()).every((b) => ['BackedUp', 'Expunged', 'Error', 'Failed'].includes(b.status)), 90_000, `backups and removals to end (${logs()})`, 250);
  }

  beforeAll(async () => {
    plane = await startManagementPlane({ STRATA_TEST_SCHEDULE_EVERY_MS: String(EVERY_MS) });
    second = startStrata(['api'], plane.env);
    const endpointB = await until(async () => /listening on (\S+)/.exec(second.output())?.[1], 30_000, "the second instance to listen", 50);
    apiA = new ApiClient(new URL(plane.endpoint).origin, plane.admin.apikey, plane.admin.secretkey);
    apiB = new ApiClient(new URL(endpointB).origin, plane.admin.apikey, plane.admin.secretkey);
    pg = new Client({ connectionString: plane.db.url });
    await pg.connect();
    const catalog = await createBackupCatalog(apiA, 'cluster-zone', 8);
    zoneId = catalog.zoneId;
    repoId = ((await okA('listBackupRepositories', {})).backuprepository as { id: string }[])[0].id;
    agent = startStrata(['agent'], agentEnv(plane, hostName, 'cluster-zone'));
    // vdb is sparse (no data), but a full backup copies its zeroes, which the bandwidth limit slows down; it is
    // that large because the limit is set on libvirt's block jobs only right after they start.
    domain = await createTestDomain({ disks: [{ sizeMiB: 8 }, { sizeMiB: 32 * GiB }], running: true });
    await assignWhenListed(apiA, domain.uuid, catalog.offeringId, () => agent.output());
    await writePattern(domain, 'vda', { offset: 0, length: 2 << 20, pattern: 0x31 });
  });

  afterAll(async () => {
    agent?.child.kill('SIGTERM');
    await agent?.exited;
    await domain?.destroy();
    second?.child.kill('SIGTERM');
    await second?.exited;
    await pg?.end();
    await plane?.stop();
  });

  it('refuses bad schedules, time zones, interval types and maxbackups in updateBackupSchedule, naming the parameter (431)', async () => {
    const created = (await okB('createBackupSchedule', { virtualmachineid: domain.uuid, intervaltype: 'WEEKLY', schedule: '00:23:1', timezone: 'America/New_York' })).backupschedule as { id: string };
    try {
      for (const [params, parameter] of [
        [{ timezone: 'Mars/Olympus' }, 'timezone'],
        [{ timezone: 'GMT+1' }, 'timezone'],
        [{ schedule: '00:24:1' }, 'schedule'],
        [{ schedule: '00:23:8' }, 'schedule'],
        [{ intervaltype: 'DAILY' }, 'schedule'], // MM:HH:DD does not fit DAILY
        [{ intervaltype: 'YEARLY' }, 'intervaltype'],
        [{ maxbackups: '-1' }, 'maxbackups'],
        [{ quiescevm: 'maybe' }, 'quiescevm'],
      ] as const) {
        const r = await apiA.call('updateBackupSchedule', { id: created.id, ...params });
        expect({ params, status: r.status }).toEqual({ params, status: 431 });
        expect({ params, text: JSON.stringify(r.body) }).toEqual({ params, text: expect.stringContaining(parameter) });
      }
      const unknown = await apiA.call('createBackupSchedule', { virtualmachineid: '00000000-0000-4000-8000-000000000000', intervaltype: 'HOURLY', schedule: '05', timezone: 'UTC' });
      expect(unknown.status).toBe(431);
      expect(JSON.stringify(unknown.body)).toContain('virtualmachineid');
      // Nothing changed.
      expect(((await okA('listBackupSchedule', { id: created.id })).backupschedule as unknown[])[0]).toMatchObject({ intervaltype: 'WEEKLY', schedule: '00:23:1', timezone: 'America/New_York' });
    } finally {
      await okA('deleteBackupSchedule', { id: created.id });
    }
  });

  it('each fire is handled by one instance, no period fires twice, and each fire gives at most one backup', async () => {
    const created = (await okB('createBackupSchedule', { virtualmachineid: domain.uuid, intervaltype: 'HOURLY', schedule: '05', timezone: 'Europe/Berlin', maxbackups: '3' })).backupschedule as { id: string };
    const sid = created.id;
    await until(async () => fires(sid).length >= 5 && fires(sid).filter((f) => f.backupId).length >= 2, 60_000, `five fires, two backups (${logs()})`, 250);
    // Both dispatchers upsert the changed job scheduler again; retention now keeps two.
    await okA('updateBackupSchedule', { id: sid, schedule: '07', maxbackups: '2' });
    const updatedAt = Date.now();
    await until(async () => fires(sid).length >= 10 && fires(sid).filter((f) => f.backupId && f.due > updatedAt).length >= 2, 60_000, `ten fires, two backups after the update (${logs()})`, 250);
    // Retention: after each completion the schedule's older backups are merged away; two are kept.
    const hourly = async (status: string) => (await allBackups()).filter((b) => b.intervaltype === 'HOURLY' && b.status === status).length;
    await until(async () => (await hourly('BackedUp')) <= 2 && (await hourly('Expunged')) >= 2, 60_000, `retention to keep two backups (${logs()})`, 100);
    await okB('deleteBackupSchedule', { id: sid });
    await settle();
    // Deleted: the job scheduler is gone from Redis, no fire comes any more.
    const seen = fires(sid).length;
    await new Promise((r) => setTimeout(r, 3 * EVERY_MS));
    expect(fires(sid).length).toBe(seen);

    const all = fires(sid).filter((f) => f.skipped !== 'the schedule was deleted');
    // Each fire handled once, by one instance; both instances handled fires.
    const byId = new Map<string, Fire[]>();
    for (const f of all) byId.set(f.fireId, [...(byId.get(f.fireId) ?? []), f]);
    expect([...byId.entries()].filter(([, fs]) => fs.length !== 1)).toEqual([]);
    expect({ A: all.filter((f) => f.instance === 'A').length > 0, B: all.filter((f) => f.instance === 'B').length > 0 }).toEqual({ A: true, B: true });
    // No period fires twice: the due times are distinct slots of the interval (the first fire sets their phase).
    const dues = all.map((f) => f.due).sort((a, b) => a - b);
    expect(new Set(dues).size).toBe(dues.length);
    expect(dues.filter((d) => (d - dues[0]) % EVERY_MS !== 0)).toEqual([]);

    // Each requested fire is one BackupRequested of the schedule (requested at its due time), and nothing else is.
    const requested = all.filter((f) => f.backupId);
    expect(requested.length).toBeGreaterThanOrEqual(3);
    const events = (await backupEvents()).filter((e) => e.type === 'BackupRequested' && e.scheduleId === sid);
    expect(events.map((e) => e.backupId).sort()).toEqual(requested.map((f) => f.backupId).sort());
    for (const e of events) expect(Date.parse(e.requestedAt!)).toBe(requested.find((f) => f.backupId === e.backupId)!.due);
    const skipped = all.filter((f) => f.skipped);
    for (const f of skipped) expect({ fire: f.fireId, level: f.level }).toEqual({ fire: f.fireId, level: 'warn' });

    // Scheduled backups carry their interval type; retention kept the newest two.
    const backups = (await allBackups()).filter((b) => requested.some((f) => f.backupId === b.id));
    expect(backups.length).toBe(requested.length);
    expect(backups.every((b) => b.intervaltype === 'HOURLY')).toBe(true);
    // A backup that was running when the schedule was deleted is kept: a deleted schedule keeps its backups.
    expect(backups.filter((b) => b.status === 'BackedUp').length).toBeLessThanOrEqual(3);
    expect(backups.filter((b) => b.status === 'Expunged').length).toBeGreaterThanOrEqual(2);
    const check = JSON.parse((await runStrata(['repository', 'check', '--id', repoId, '--json'], plane.env)).stdout || '{}') as { unreferenced: string[]; missing: unknown[] };
    expect({ unreferenced: check.unreferenced, missing: check.missing }).toEqual({ unreferenced: [], missing: [] });
  });

  it('a fire while the previous backup still runs is skipped with a warning: no backup stacks up', async () => {
    // 5 GB/s of vdb's zeroes (32 GiB): each (isolated, so full) backup runs for about 7 s, across three fires.
    await okA('updateConfiguration', { name: 'nas.backup.bandwidth.limit.mbps', value: '40000', zoneid: zoneId });
    const created = (await okA('createBackupSchedule', { virtualmachineid: domain.uuid, intervaltype: 'DAILY', schedule: '30:02', timezone: 'America/New_York', isolated: 'true' })).backupschedule as { id: string };
    const sid = created.id;
    const running = (f: Fire) => /^backup \S+ of the VM is still running$/.test(f.skipped ?? '');
    try {
      await until(async () => fires(sid).filter((f) => f.backupId).length >= 2 && fires(sid).filter(running).length >= 3, 120_000, `two backups and three fires skipped for a running backup (${logs()})`, 250);
    } finally {
      await okB('deleteBackupSchedule', { id: sid });
      await okA('updateConfiguration', { name: 'nas.backup.bandwidth.limit.mbps', value: '0', zoneid: zoneId });
    }
    await settle();

    const all = fires(sid).filter((f) => f.skipped !== 'the schedule was deleted');
    const requested = all.filter((f) => f.backupId);
    const events = (await backupEvents()).filter((e) => requested.some((f) => f.backupId === e.backupId));
    // In the VM's stream, a backup of the schedule is requested only after the one before it ended.
    const order = events.map((e) => `${e.type === 'BackupRequested' ? 'start' : 'end'} ${e.backupId}`);
    const alternating = events.filter((e) => e.type === 'BackupRequested').flatMap((e) => [`start ${e.backupId}`, `end ${e.backupId}`]);
    expect(order).toEqual(alternating);
    // A skipped fire names the backup that ran, one that an earlier fire requested; it is a warning.
    for (const f of all.filter(running)) {
      const runningId = /^backup (\S+) of/.exec(f.skipped!)![1];
      const by = requested.find((r) => r.backupId === runningId);
      expect({ fire: f.fireId, level: f.level, runningFiredBefore: by !== undefined && by.due < f.due }).toEqual({ fire: f.fireId, level: 'warn', runningFiredBefore: true });
    }
    // Only fires that were not skipped have a backup: exactly one each, isolated and DAILY.
    expect(events.filter((e) => e.type === 'BackupRequested').length).toBe(requested.length);
    expect(events.filter((e) => e.type === 'BackupRequested').every((e) => e.scheduleId === sid && e.intervalType === 'DAILY')).toBe(true);
    const backups = (await allBackups()).filter((b) => requested.some((f) => f.backupId === b.id));
    expect(backups.map((b) => [b.intervaltype, b.isolated, b.status])).toEqual(requested.map(() => ['DAILY', true, 'BackedUp']));
  });
});
