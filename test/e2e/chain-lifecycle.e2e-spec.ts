import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { ApiClient } from '../support/api-client';
import { createPrng, createTestDomain, ExpectedDisks, TestDomain, useLibvirtCleanup, writeScattered } from '../support/libvirt';
import { agentEnv, assignWhenListed, createBackupCatalog, okCaller } from '../support/backup-fixture';
import { RunningPlane, startManagementPlane } from '../support/management-plane';
import { runStrata, startStrata, StrataProcess, until } from '../support/strata-process';

interface Backup {
  id: string;
  name?: string;
  type: string;
  status: string;
  chainid: string;
  parentid?: string;
  chainposition: number;
  isolated: boolean;
}

/**
 * Proof of the chain lifecycle (issue 6, point 5): a seeded random sequence of at least 60 operations on a
 * two-disk VM (guest writes, full, incremental and isolated backups, deletes of the newest, the oldest, a
 * middle backup and full bases, finishBackupChain, and a few real restores). After every step every
 * remaining backup, read through its top files, equals the disks as they were when it was taken, and the
 * repository holds exactly the files of the remaining backups (`strata repository check`). The seed is
 * printed when a step fails; STRATA_TEST_SEED=<seed> replays a run.
 */
describe('chain lifecycle: random deletes, merges and backups keep every backup restorable', () => {
  useLibvirtCleanup();
  let plane: RunningPlane;
  let api: ApiClient;
  let agent: StrataProcess;
  let domain: TestDomain;
  let expected: ExpectedDisks;
  let repoDir: string;
  let repoId: string;
  let volumeIds: Record<string, string>;
  const hostName = `strata-e2e-${randomBytes(3).toString('hex')}`;
  const seed = process.env.STRATA_TEST_SEED ?? randomBytes(4).toString('hex');
  const ok = okCaller(() => api);
  const live = async () => ((await ok('listBackups', { virtualmachineid: domain.uuid })).backup as Backup[] | undefined) ?? [];

  beforeAll(async () => {
    plane = await startManagementPlane();
    api = new ApiClient(new URL(plane.endpoint).origin, plane.admin.apikey, plane.admin.secretkey);
    const catalog = await createBackupCatalog(api, 'lifecycle-zone', 4);
    repoDir = catalog.repoDir;
    repoId = ((await ok('listBackupRepositories', {})).backuprepository as { id: string }[])[0].id;
    agent = startStrata(['agent'], agentEnv(plane, hostName, 'lifecycle-zone'));
    domain = await createTestDomain({ disks: [{ sizeMiB: 16 }, { sizeMiB: 16 }], running: true });
    expected = await ExpectedDisks.forDomain(domain);
    volumeIds = await assignWhenListed(api, domain.uuid, catalog.offeringId, () => agent.output());
  });

  afterAll(async () => {
    agent?.child.kill('SIGTERM');
    await agent?.exited;
    await domain?.destroy();
    await plane?.stop();
  });

  async function backup(label: string, isolated: boolean): Promise<void> {
    await expected.snapshot(label);
    const started = await ok('createBackup', { virtualmachineid: domain.uuid, name: label, ...(isolated && { isolated: 'true' }) });
    const job = await api.waitForJob(started.jobid as string, 120_000);
    if (job.jobstatus !== 1) throw new Error(`backup ${label} failed: ${JSON.stringify(job.jobresult)} (agent: ${agent.output().slice(-2000)})`);
  }

  async function remove(b: Backup): Promise<void> {
    const r = await ok('deleteBackup', { id: b.id });
    const job = await api.waitForJob(r.jobid as string, 120_000);
    if (job.jobstatus !== 1) throw new Error(`deleteBackup ${b.name} failed: ${JSON.stringify(job.jobresult)} (agent: ${agent.output().slice(-2000)})`);
    await until(async () => ((await ok('listBackups', { id: b.id })).backup as Backup[])[0]?.status === 'Expunged', 60_000, `backup ${b.name} to be Expunged`, 100);
  }

  /** Every remaining backup equals its moment; the repository holds their files and nothing else. */
  async function verify(step: string): Promise<void> {
    const backups = await live();
    for (const b of backups) {
      expect({ step, backup: b.name, status: b.status }).toEqual({ step, backup: b.name, status: 'BackedUp' });
      for (const target of ['vda', 'vdb']) {
        const top = join(repoDir, domain.uuid, b.chainid, b.id, `${volumeIds[target]}.qcow2`);
        const result = await expected.get(target).compareWith(top, b.name!, { format: 'qcow2' });
        expect({ step, backup: b.name, target, ...result }).toMatchObject({ equal: true });
      }
    }
    const check = await runStrata(['repository', 'check', '--id', repoId, '--json'], plane.env);
    const report = JSON.parse(check.stdout || '{}') as { unreferenced: string[]; missing: unknown[]; backups: number };
    expect({ step, unreferenced: report.unreferenced, missing: report.missing, backups: report.backups }).toEqual({ step, unreferenced: [], missing: [], backups: backups.length });
  }

  it(`runs 64 random operations (seed ${seed}) and every remaining backup stays identical to its moment`, async () => {
    const next = createPrng(seed);
    const pick = <T>(xs: T[]): T => xs[next() % xs.length];
    const counts: Record<string, number> = {};
    const did = (what: string) => (counts[what] = (counts[what] ?? 0) + 1);
    let n = 0;
    const steps: string[] = [];
    try {
      for (let step = 1; step <= 64; step++) {
        const backups = (await live()).sort((a, b) => (a.name! < b.name! ? -1 : 1));
        const roll = next() % 100;
        let what: string;
        if (step === 1 || (backups.length === 0 && roll < 60)) {
          await writeScattered(domain, pick(['vda', 'vdb']), { seed: `${seed}/${step}`, count: 1 + (next() % 6) }, { expected });
          await backup(`s${String(++n).padStart(3, '0')}`, false);
          what = 'backup';
        } else if ((step === 24 || step === 48) && backups.length > 0) {
          // A real restore: the VM's disks become the backup's, and its next backup is full.
          const b = pick(backups);
          await domain.stop();
          const vmState = async () => ((await ok('listVirtualMachines', { id: domain.uuid })).virtualmachine as { state: string }[])[0].state;
          await until(async () => (await vmState()) === 'Stopped', 30_000, 'the agent to report the VM stopped', 200);
          const r = await ok('restoreBackup', { id: b.id });
          const job = await api.waitForJob(r.jobid as string, 120_000);
          expect({ step, restore: b.name, status: job.jobstatus, result: job.jobresult }).toMatchObject({ status: 1 });
          await expected.resetTo(b.name!);
          expect(await expected.compareDomain(domain)).toEqual({ vda: expect.objectContaining({ equal: true }), vdb: expect.objectContaining({ equal: true }) });
          await domain.start();
          await until(async () => (await vmState()) === 'Running', 30_000, 'the agent to report the VM running', 200);
          what = `restore ${b.name}`;
        } else if (roll < 30) {
          await writeScattered(domain, pick(['vda', 'vdb']), { seed: `${seed}/${step}`, count: 1 + (next() % 8) }, { expected });
          what = 'write';
        } else if (roll < 55) {
          const isolated = next() % 8 === 0;
          await writeScattered(domain, pick(['vda', 'vdb']), { seed: `${seed}/${step}b`, count: 1 + (next() % 4) }, { expected });
          await backup(`s${String(++n).padStart(3, '0')}`, isolated);
          what = isolated ? 'isolated backup' : 'backup';
        } else if (roll < 92 && backups.length > 0) {
          const chained = backups.filter((b) => !b.isolated);
          const fulls = chained.filter((b) => b.type === 'FULL');
          const kind = pick(['newest', 'oldest', 'middle', 'full', 'any']);
          const b =
            kind === 'newest' ? backups[backups.length - 1] : kind === 'oldest' ? backups[0] : kind === 'middle' ? backups[Math.floor(backups.length / 2)] : kind === 'full' && fulls.length ? pick(fulls) : pick(backups);
          const hasChild = backups.some((x) => x.parentid === b.id);
          did(hasChild ? (b.type === 'FULL' ? 'merge of a full base' : 'merge of an incremental') : 'drop');
          await remove(b);
          what = `delete ${kind} ${b.name} (${b.type}${hasChild ? ', merged into its child' : ''})`;
        } else {
          await ok('finishBackupChain', { virtualmachineid: domain.uuid });
          what = 'finishBackupChain';
        }
        did(what.split(' ')[0]);
        steps.push(`${step}: ${what}`);
        await verify(`step ${step} (${what})`);
      }
    } catch (error) {
      process.stderr.write(`chain-lifecycle: failed with seed ${seed} (STRATA_TEST_SEED=${seed} replays it); steps:\n${steps.join('\n')}\n`);
      throw error;
    }
    process.stderr.write(`chain-lifecycle seed ${seed}: ${JSON.stringify(counts)}\n`);
    expect((counts.backup ?? 0) + (counts.isolated ?? 0)).toBeGreaterThan(10);
    expect(counts.delete ?? 0).toBeGreaterThan(5);
  });

  it('deleteBackup refuses an unknown backup naming id (431), and a forced delete removes a backup whose files are gone', async () => {
    const unknown = await api.call('deleteBackup', { id: '00000000-0000-4000-8000-000000000000' });
    expect(unknown.status).toBe(431);
    expect(JSON.stringify(unknown.body)).toContain('id');
    await writeScattered(domain, 'vda', { seed: `${seed}/forced`, count: 2 }, { expected });
    await backup('forced1', true);
    const b = (await live()).find((x) => x.name === 'forced1')!;
    await runStrata(['repository', 'check', '--id', repoId, '--json'], plane.env);
    const { rm } = await import('node:fs/promises');
    await rm(join(repoDir, domain.uuid, b.chainid, b.id), { recursive: true, force: true });
    const check = JSON.parse((await runStrata(['repository', 'check', '--id', repoId, '--json'], plane.env)).stdout) as { missing: { backupId: string }[] };
    expect(check.missing.map((m) => m.backupId)).toEqual([b.id]);
    const plain = await ok('deleteBackup', { id: b.id });
    const failed = await api.waitForJob(plain.jobid as string, 60_000);
    expect({ status: failed.jobstatus, text: JSON.stringify(failed.jobresult) }).toMatchObject({ status: 2, text: expect.stringContaining('forced') });
    const forced = await ok('deleteBackup', { id: b.id, forced: 'true' });
    expect((await api.waitForJob(forced.jobid as string, 60_000)).jobstatus).toBe(1);
    const row = ((await ok('listBackups', { id: b.id })).backup as (Backup & { failure?: string })[])[0];
    expect(row).toMatchObject({ status: 'Expunged', failure: expect.stringContaining('already missing') });
    const repo = ((await ok('listBackupRepositories', { id: repoId })).backuprepository as { usedbytes: number; backupcount: number }[])[0];
    expect(repo.backupcount).toBe((await live()).length);
  });
});
