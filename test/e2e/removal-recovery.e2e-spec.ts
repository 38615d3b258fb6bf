import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Client } from 'pg';
import { backingFile, useLibvirtCleanup, writePattern, writeScattered } from '../support/libvirt';
import { backupDir, BackupRow, createBackupCatalog, expectRepositoryExact, getBackup, readManifest, startAgent, stopAgent, takeBackup, topFile, useBackupRig, waitHostUp } from '../support/backup-fixture';
import { until } from '../support/strata-process';

const MiB = 1024 * 1024;

/**
 * Deleting backups that cannot be removed at once, and removals that survive an agent crash (issue 6).
 * A backup whose child a quick restore consolidates from is Removed at once and merged when the
 * consolidation is done (the pull is held to the zone bandwidth limit so that it runs long enough);
 * another backup nobody reads is removed meanwhile. An agent SIGKILLed in the middle of a merge (one child
 * volume rebased, the other not) or of a drop (files deleted, nothing reported) is restarted: BullMQ hands
 * the same removal to it, which recognises what the dead attempt did and finishes exactly once. The dead
 * agent is held at those points by the removal executor's test-only failpoints (STRATA_AGENT_FAILPOINT).
 * After each step every remaining backup equals the disks at its moment and the repository holds exactly
 * their files (`strata repository check`); a remaining backup is also restored into the VM.
 */
describe('removals held back by readers and removals across an agent crash (real libvirt, real processes)', () => {
  useLibvirtCleanup();
  let pg: Client;
  // Declared before the rig's: after* hooks run in declaration order, and the plane's stop drops the database under this connection.
  afterAll(async () => {
    await pg?.end();
  });
  const rig = useBackupRig({ zoneName: 'removal-zone', disks: [{ sizeMiB: 8 }, { sizeMiB: 8 }], catalog: (api, zoneName) => createBackupCatalog(api, zoneName, 8, { allowquickrestore: 'true' }) });
  const { ok } = rig;
  let repoId: string;
  const b: Record<string, BackupRow> = {};
  const jobOf = async (jobid: string) => (await rig.api.call('queryAsyncJobResult', { jobid })).body.queryasyncjobresultresponse as { jobstatus: number; jobresult?: Record<string, unknown> };

  async function setVmState(state: 'Stopped' | 'Running'): Promise<void> {
    if (state === 'Stopped' && (await rig.domain.isActive())) await rig.domain.stop();
    if (state === 'Running' && !(await rig.domain.isActive())) await rig.domain.start();
    const listed = async () => ((await ok('listVirtualMachines', { id: rig.domain.uuid })).virtualmachine as { state: string }[])[0].state;
    await until(async () => (await listed()) === state, 30_000, `the VM to be listed ${state}`, 100);
  }

  async function backup(label: string): Promise<BackupRow> {
    await waitHostUp(rig.api, rig.hostName);
    return (b[label] = await takeBackup(rig, label));
  }

  /** The removal events of one backup, by type. */
  async function removalEvents(backupId: string): Promise<Record<string, number>> {
    const { rows } = await pg.query(
      `SELECT type, count(*)::int AS n FROM events WHERE stream_id = $1 AND data->>'backupId' = $2
         AND type IN ('BackupDeletionRequested', 'BackupRemovalStarted', 'BackupsMerged', 'BackupExpunged', 'BackupRemovalFailed') GROUP BY type`,
      [`vmBackups-${rig.domain.uuid}`, backupId],
    );
    return Object.fromEntries(rows.map((r: { type: string; n: number }) => [r.type, r.n]));
  }

  /** Every remaining backup equals its moment; the repository holds their files and nothing else. */
  async function verify(step: string): Promise<void> {
    await expectRepositoryExact(rig, repoId, step);
    // No half-merged copy and no removal marker left behind.
    const leftovers = (await readdir(join(rig.catalog.repoDir, rig.domain.uuid), { recursive: true })).filter((f) => /\.strata-merge$|(^|\/)\.[^/]+$/.test(String(f)));
    expect({ step, leftovers }).toEqual({ step, leftovers: [] });
  }

  beforeAll(async () => {
    pg = new Client({ connectionString: rig.plane.db.url });
    await pg.connect();
    repoId = ((await ok('listBackupRepositories', {})).backuprepository as { id: string }[])[0].id;
    await writePattern(rig.domain, 'vda', { offset: 0, length: MiB, pattern: 0x11 }, { expected: rig.expected });
    await writePattern(rig.domain, 'vdb', { offset: MiB, length: MiB, pattern: 0x22 }, { expected: rig.expected });
    await backup('b1');
    for (const label of ['b2', 'b3', 'b4']) {
      await writeScattered(rig.domain, 'vda', { seed: `${label}-a`, count: 3 }, { expected: rig.expected });
      await writeScattered(rig.domain, 'vdb', { seed: `${label}-b`, count: 3 }, { expected: rig.expected });
      await backup(label);
    }
    expect(['b1', 'b2', 'b3', 'b4'].map((l) => [b[l].type, b[l].parentid ?? null])).toEqual([
      ['FULL', null],
      ['INCREMENTAL', b.b1.id],
      ['INCREMENTAL', b.b2.id],
      ['INCREMENTAL', b.b3.id],
    ]);
  });

  it('a backup whose child a quick restore consolidates from is Removed at once and merged when the consolidation is done', async () => {
    await setVmState('Stopped');
    // 8 Mbit/s: pulling the 16 MiB the VM reads from b1..b3 (b1, the full backup, holds both disks whole) takes about 16 s.
    await ok('updateConfiguration', { name: 'nas.backup.bandwidth.limit.mbps', value: '8', zoneid: rig.catalog.zoneId });
    try {
      const started = await ok('restoreBackup', { id: b.b3.id, quickrestore: 'true' });
      const restored = await rig.api.waitForJob(started.jobid as string, 120_000);
      expect({ status: restored.jobstatus, result: restored.jobresult }).toMatchObject({ status: 1 });
      const consolidation = restored.jobresult.consolidationjobid as string;
      expect((await jobOf(consolidation)).jobstatus).toBe(0);

      // b2 is read (b3's chain): Removed, its files stay, the job says what it waits for.
      const deleted = await rig.api.waitForJob((await ok('deleteBackup', { id: b.b2.id })).jobid as string, 30_000);
      expect({ status: deleted.jobstatus, text: JSON.stringify(deleted.jobresult) }).toEqual({ status: 1, text: expect.stringMatching(/Removed.*waiting for: quick restore \S+ is consolidating from it/) });
      expect((await getBackup(rig, b.b2.id)).status).toBe('Removed');
      // b4 is read by nobody: removed now, while b2 waits.
      const dropped = await rig.api.waitForJob((await ok('deleteBackup', { id: b.b4.id })).jobid as string, 60_000);
      expect(dropped.jobstatus).toBe(1);
      expect((await getBackup(rig, b.b4.id)).status).toBe('Expunged');
      expect(existsSync(backupDir(rig, b.b4))).toBe(false);
      expect((await jobOf(consolidation)).jobstatus).toBe(0);
      expect((await getBackup(rig, b.b2.id)).status).toBe('Removed');
      expect(existsSync(topFile(rig, b.b2, 'vda'))).toBe(true);
      expect(await removalEvents(b.b2.id)).toEqual({ BackupDeletionRequested: 1 });

      const done = await rig.api.waitForJob(consolidation, 120_000);
      expect({ status: done.jobstatus, result: done.jobresult }).toMatchObject({ status: 1 });
    } finally {
      await ok('updateConfiguration', { name: 'nas.backup.bandwidth.limit.mbps', value: '0', zoneid: rig.catalog.zoneId });
    }
    await until(async () => (await getBackup(rig, b.b2.id)).status === 'Expunged', 60_000, `b2 to be merged and Expunged (agent: ${rig.agent.output().slice(-2000)})`, 100);
    expect(await removalEvents(b.b2.id)).toEqual({ BackupDeletionRequested: 1, BackupRemovalStarted: 1, BackupsMerged: 1, BackupExpunged: 1 });
    // The merge started only after the consolidation ended.
    const { rows } = await pg.query(
      `SELECT type FROM events WHERE stream_id = $1 AND (type = 'ConsolidationCompleted' OR (type = 'BackupRemovalStarted' AND data->>'backupId' = $2)) ORDER BY stream_revision`,
      [`vmBackups-${rig.domain.uuid}`, b.b2.id],
    );
    expect(rows.map((r: { type: string }) => r.type)).toEqual(['ConsolidationCompleted', 'BackupRemovalStarted']);
    expect(existsSync(backupDir(rig, b.b2))).toBe(false);
    for (const target of ['vda', 'vdb']) expect(await backingFile(topFile(rig, b.b3, target))).toBe(`../${b.b1.id}/${rig.volumeIds[target]}.qcow2`);
    expect((await getBackup(rig, b.b3.id)).parentid).toBe(b.b1.id);
    await rig.expected.resetTo('b3'); // the VM runs on what it was restored to
    await verify('after the consolidation');
  });

  it('an agent killed in the middle of a merge: the restarted agent finishes it, exactly once', async () => {
    const FAILPOINT = 'hang-after-first-merged-volume';
    await stopAgent(rig, 'SIGTERM');
    startAgent(rig, { STRATA_AGENT_FAILPOINT: FAILPOINT });
    await waitHostUp(rig.api, rig.hostName);
    // b1 is b3's parent: deleting it merges it into b3 (both volumes rebased onto nothing).
    const started = await ok('deleteBackup', { id: b.b1.id });
    await until(async () => rig.agent.output().includes(`failpoint ${FAILPOINT}: removal `) && rig.agent.output().includes(`of backup ${b.b1.id}`), 60_000, `the agent to reach the failpoint (agent: ${rig.agent.output().slice(-2000)})`, 50);
    // Half merged: one of b3's volumes no longer reads b1, the other still does.
    const backings = await Promise.all(['vda', 'vdb'].map((t) => backingFile(topFile(rig, b.b3, t))));
    expect(backings.filter((x) => x === null)).toHaveLength(1);
    expect(backings.filter((x) => x !== null && x.includes(b.b1.id))).toHaveLength(1);

    await stopAgent(rig, 'SIGKILL');
    const until3s = Date.now() + 3000;
    while (Date.now() < until3s) {
      expect((await getBackup(rig, b.b1.id)).status).toBe('Removed');
      expect((await jobOf(started.jobid as string)).jobstatus).toBe(0);
      expect(existsSync(backupDir(rig, b.b1))).toBe(true);
      await new Promise((r) => setTimeout(r, 250));
    }

    startAgent(rig); // BullMQ hands the removal out again once the dead agent's lock lapses
    const job = await rig.api.waitForJob(started.jobid as string, 90_000);
    expect({ status: job.jobstatus, result: job.jobresult, agent: job.jobstatus === 1 ? '' : rig.agent.output().slice(-3000) }).toMatchObject({ status: 1 });
    expect((await getBackup(rig, b.b1.id)).status).toBe('Expunged');
    expect(rig.agent.output()).toContain(`backup ${b.b1.id}: merged into ${b.b3.id}`);
    expect(await removalEvents(b.b1.id)).toEqual({ BackupDeletionRequested: 1, BackupRemovalStarted: 1, BackupsMerged: 1, BackupExpunged: 1 });
    expect(existsSync(backupDir(rig, b.b1))).toBe(false);
    for (const target of ['vda', 'vdb']) expect(await backingFile(topFile(rig, b.b3, target))).toBeNull();
    expect(await readManifest(rig, b.b3)).toMatchObject({ parentBackupId: null, mergedFrom: [b.b2.id, b.b1.id] });
    expect(await getBackup(rig, b.b3.id)).not.toHaveProperty('parentid');
    await verify('after the merge across a crash');

    // The merged backup restores exactly.
    await setVmState('Stopped');
    const restore = await rig.api.waitForJob((await ok('restoreBackup', { id: b.b3.id })).jobid as string, 120_000);
    expect({ status: restore.jobstatus, result: restore.jobresult }).toMatchObject({ status: 1 });
    await rig.expected.resetTo('b3');
    expect(await rig.expected.compareDomain(rig.domain)).toEqual({ vda: expect.objectContaining({ equal: true }), vdb: expect.objectContaining({ equal: true }) });
    await setVmState('Running');
  });

  it('an agent killed after deleting the files of a dropped backup: the restarted agent reports it removed, exactly once', async () => {
    const FAILPOINT = 'hang-after-deleting-backup-files';
    await writeScattered(rig.domain, 'vda', { seed: 'b5', count: 4 }, { expected: rig.expected });
    await backup('b5');
    await stopAgent(rig, 'SIGTERM');
    startAgent(rig, { STRATA_AGENT_FAILPOINT: FAILPOINT });
    await waitHostUp(rig.api, rig.hostName);
    const started = await ok('deleteBackup', { id: b.b5.id });
    await until(async () => rig.agent.output().includes(`failpoint ${FAILPOINT}: removal `) && rig.agent.output().includes(`of backup ${b.b5.id}`), 60_000, `the agent to reach the failpoint (agent: ${rig.agent.output().slice(-2000)})`, 50);
    expect(existsSync(backupDir(rig, b.b5))).toBe(false);
    await stopAgent(rig, 'SIGKILL');
    expect((await getBackup(rig, b.b5.id)).status).toBe('Removed');

    startAgent(rig);
    const job = await rig.api.waitForJob(started.jobid as string, 90_000);
    expect({ status: job.jobstatus, result: job.jobresult, agent: job.jobstatus === 1 ? '' : rig.agent.output().slice(-3000) }).toMatchObject({ status: 1 });
    // Not "files missing": the marker the dead attempt left says it deleted them itself.
    const gone = await getBackup(rig, b.b5.id);
    expect(gone.status).toBe('Expunged');
    expect(gone.failure ?? '').not.toContain('missing');
    expect(await removalEvents(b.b5.id)).toEqual({ BackupDeletionRequested: 1, BackupRemovalStarted: 1, BackupExpunged: 1 });
    const { rows } = await pg.query(`SELECT data->>'filesMissing' AS missing FROM events WHERE type = 'BackupExpunged' AND data->>'backupId' = $1`, [b.b5.id]);
    expect(rows).toEqual([{ missing: 'false' }]);
    await verify('after the drop across a crash');

    // The chain goes on: the next backup is taken and exact.
    await writeScattered(rig.domain, 'vdb', { seed: 'b6', count: 4 }, { expected: rig.expected });
    await backup('b6');
    await verify('after the next backup');
  });
});
