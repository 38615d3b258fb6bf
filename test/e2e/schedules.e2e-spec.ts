import { randomBytes } from 'node:crypto';
import { ApiClient } from '../support/api-client';
import { createTestDomain, TestDomain, useLibvirtCleanup } from '../support/libvirt';
import { agentEnv, assignWhenListed, createBackupCatalog, okCaller } from '../support/backup-fixture';
import { RunningPlane, startManagementPlane } from '../support/management-plane';
import { startStrata, StrataProcess, until } from '../support/strata-process';

interface Backup {
  id: string;
  status: string;
  intervaltype: string;
}

/**
 * Backup schedules (issue 6, point 2) end to end. Cron times cannot be waited for in a test, so the
 * management plane runs with the test-only STRATA_TEST_SCHEDULE_EVERY_MS=1500: every schedule's BullMQ job
 * scheduler fires every 1.5 s instead of at its cron time (the cron patterns are unit-tested in
 * backup-schedule.decider.spec.ts). Fires while the VM's backup runs are skipped, scheduled backups carry
 * their interval type, and retention keeps `maxbackups` of them.
 */
describe('backup schedules (BullMQ job schedulers, test interval)', () => {
  useLibvirtCleanup();
  let plane: RunningPlane;
  let api: ApiClient;
  let agent: StrataProcess;
  let domain: TestDomain;
  const hostName = `strata-e2e-${randomBytes(3).toString('hex')}`;
  const ok = okCaller(() => api);
  const backups = async (status?: string) => ((await ok('listBackups', { virtualmachineid: domain.uuid, ...(status && { status }) })).backup as Backup[] | undefined) ?? [];

  beforeAll(async () => {
    plane = await startManagementPlane({ STRATA_TEST_SCHEDULE_EVERY_MS: '1500' });
    api = new ApiClient(new URL(plane.endpoint).origin, plane.admin.apikey, plane.admin.secretkey);
    const catalog = await createBackupCatalog(api, 'schedule-zone', 8);
    agent = startStrata(['agent'], agentEnv(plane, hostName, 'schedule-zone'));
    domain = await createTestDomain({ disks: [{ sizeMiB: 16 }], running: true });
    await assignWhenListed(api, domain.uuid, catalog.offeringId, () => agent.output());
  });

  afterAll(async () => {
    agent?.child.kill('SIGTERM');
    await agent?.exited;
    await domain?.destroy();
    await plane?.stop();
  });

  it('refuses bad schedules and time zones naming the parameter (431)', async () => {
    for (const [params, parameter] of [
      [{ intervaltype: 'DAILY', schedule: '10', timezone: 'UTC' }, 'schedule'],
      [{ intervaltype: 'WEEKLY', schedule: '00:10:9', timezone: 'UTC' }, 'schedule'],
      [{ intervaltype: 'MONTHLY', schedule: '00:10:29', timezone: 'UTC' }, 'schedule'],
      [{ intervaltype: 'HOURLY', schedule: '05', timezone: 'Mars/Olympus' }, 'timezone'],
      [{ intervaltype: 'YEARLY', schedule: '05', timezone: 'UTC' }, 'intervaltype'],
    ] as const) {
      const r = await api.call('createBackupSchedule', { virtualmachineid: domain.uuid, ...params });
      expect({ params, status: r.status }).toEqual({ params, status: 431 });
      expect(JSON.stringify(r.body)).toContain(parameter);
    }
  });

  it('fires, never stacks backups up, keeps maxbackups of the schedule, and stops when deleted', async () => {
    const created = (await ok('createBackupSchedule', { virtualmachineid: domain.uuid, intervaltype: 'HOURLY', schedule: '05', timezone: 'Europe/Berlin', maxbackups: '2' })).backupschedule as { id: string };
    expect(created).toMatchObject({ virtualmachineid: domain.uuid, intervaltype: 'HOURLY', schedule: '05', timezone: 'Europe/Berlin', maxbackups: 2 });
    const listed = (await ok('listBackupSchedule', { virtualmachineid: domain.uuid })).backupschedule as { id: string }[];
    expect(listed.map((s) => s.id)).toEqual([created.id]);
    const updated = (await ok('updateBackupSchedule', { id: created.id, schedule: '07' })).backupschedule;
    expect(updated).toMatchObject({ id: created.id, schedule: '07' });

    // Retention: with maxbackups 2, older scheduled backups are deleted (merged away) as new ones complete.
    await until(async () => (await backups('Expunged')).length >= 2, 90_000, `two scheduled backups to be deleted by retention (management: ${plane.api.output().slice(-1500)})`, 500);
    const kept = (await backups()).filter((b) => b.status === 'BackedUp');
    expect(kept.length).toBeLessThanOrEqual(2);
    expect([...kept, ...(await backups('Expunged'))].every((b) => b.intervaltype === 'HOURLY')).toBe(true);
    // Fires every 1.5 s, backups of a running VM take longer now and then: those fires were skipped, never stacked.
    expect(plane.api.output()).toMatch(/fire .* skipped: backup .* still running|backup .* requested/);

    await ok('deleteBackupSchedule', { id: created.id });
    expect((await ok('listBackupSchedule', { virtualmachineid: domain.uuid })).backupschedule).toBeUndefined();
    await until(async () => (await backups()).every((b) => b.status !== 'Queued' && b.status !== 'BackingUp'), 30_000, 'the last backup to end', 200);
    const settled = (await backups()).length + (await backups('Expunged')).length;
    await new Promise((r) => setTimeout(r, 4000));
    expect((await backups()).length + (await backups('Expunged')).length).toBe(settled);
  });
});
