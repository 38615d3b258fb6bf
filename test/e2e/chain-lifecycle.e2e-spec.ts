import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { createPrng, useLibvirtCleanup, writeScattered } from '../support/libvirt';
import { backupDir, BackupRow, createBackupCatalog, expectRepositoryExact, getBackup, listVmBackups, takeBackup, useBackupRig } from '../support/backup-fixture';
import { runStrata, until } from '../support/strata-process';

interface Backup extends BackupRow {
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
  const rig = useBackupRig({ zoneName: 'lifecycle-zone', disks: [{ sizeMiB: 16 }, { sizeMiB: 16 }], catalog: (api, zoneName) => createBackupCatalog(api, zoneName, 4) });
  const { ok } = rig;
  let repoId: string;
  const seed = process.env.STRATA_TEST_SEED ?? randomBytes(4).toString('hex');
  const live = () => listVmBackups<Backup>(rig);

  beforeAll(async () => {
    repoId = ((await ok('listBackupRepositories', {})).backuprepository as { id: string }[])[0].id;
  });

  async function backup(label: string, isolated: boolean): Promise<void> {
    await takeBackup(rig, label, { params: isolated ? { isolated: 'true' } : {} });
  }

  async function remove(b: Backup): Promise<void> {
    const r = await ok('deleteBackup', { id: b.id });
    const job = await rig.api.waitForJob(r.jobid as string, 120_000);
    if (job.jobstatus !== 1) throw new Error(`deleteBackup ${b.name} failed: ${JSON.stringify(job.jobresult)} (agent: ${rig.agent.output().slice(-2000)})`);
    await until(async () => (await getBackup(rig, b.id))?.status === 'Expunged', 60_000, `backup ${b.name} to be Expunged`, 100);
  }

  /** Every remaining backup equals its moment; the repository holds their files and nothing else. */
  const verify = (step: string) => expectRepositoryExact(rig, repoId, step);

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
          await writeScattered(rig.domain, pick(['vda', 'vdb']), { seed: `${seed}/${step}`, count: 1 + (next() % 6) }, { expected: rig.expected });
          await backup(`s${String(++n).padStart(3, '0')}`, false);
          what = 'backup';
        } else if ((step === 24 || step === 48) && backups.length > 0) {
          // A real restore: the VM's disks become the backup's, and its next backup is full.
          const b = pick(backups);
          await rig.domain.stop();
          const vmState = async () => ((await ok('listVirtualMachines', { id: rig.domain.uuid })).virtualmachine as { state: string }[])[0].state;
          await until(async () => (await vmState()) === 'Stopped', 30_000, 'the agent to report the VM stopped', 200);
          const r = await ok('restoreBackup', { id: b.id });
          const job = await rig.api.waitForJob(r.jobid as string, 120_000);
          expect({ step, restore: b.name, status: job.jobstatus, result: job.jobresult }).toMatchObject({ status: 1 });
          await rig.expected.resetTo(b.name!);
          expect(await rig.expected.compareDomain(rig.domain)).toEqual({ vda: expect.objectContaining({ equal: true }), vdb: expect.objectContaining({ equal: true }) });
          await rig.domain.start();
          await until(async () => (await vmState()) === 'Running', 30_000, 'the agent to report the VM running', 200);
          what = `restore ${b.name}`;
        } else if (roll < 30) {
          await writeScattered(rig.domain, pick(['vda', 'vdb']), { seed: `${seed}/${step}`, count: 1 + (next() % 8) }, { expected: rig.expected });
          what = 'write';
        } else if (roll < 55) {
          const isolated = next() % 8 === 0;
          await writeScattered(rig.domain, pick(['vda', 'vdb']), { seed: `${seed}/${step}b`, count: 1 + (next() % 4) }, { expected: rig.expected });
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
          await ok('finishBackupChain', { virtualmachineid: rig.domain.uuid });
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
    const unknown = await rig.api.call('deleteBackup', { id: '00000000-0000-4000-8000-000000000000' });
    expect(unknown.status).toBe(431);
    expect(JSON.stringify(unknown.body)).toContain('id');
    await writeScattered(rig.domain, 'vda', { seed: `${seed}/forced`, count: 2 }, { expected: rig.expected });
    await backup('forced1', true);
    const b = (await live()).find((x) => x.name === 'forced1')!;
    await runStrata(['repository', 'check', '--id', repoId, '--json'], rig.plane.env);
    await rm(backupDir(rig, b), { recursive: true, force: true });
    const check = JSON.parse((await runStrata(['repository', 'check', '--id', repoId, '--json'], rig.plane.env)).stdout) as { missing: { backupId: string }[] };
    expect(check.missing.map((m) => m.backupId)).toEqual([b.id]);
    const plain = await ok('deleteBackup', { id: b.id });
    const failed = await rig.api.waitForJob(plain.jobid as string, 60_000);
    expect({ status: failed.jobstatus, text: JSON.stringify(failed.jobresult) }).toMatchObject({ status: 2, text: expect.stringContaining('forced') });
    const forced = await ok('deleteBackup', { id: b.id, forced: 'true' });
    expect((await rig.api.waitForJob(forced.jobid as string, 60_000)).jobstatus).toBe(1);
    const row = await getBackup(rig, b.id);
    expect(row).toMatchObject({ status: 'Expunged', failure: expect.stringContaining('already missing') });
    const repo = ((await ok('listBackupRepositories', { id: repoId })).backuprepository as { usedbytes: number; backupcount: number }[])[0];
    expect(repo.backupcount).toBe((await live()).length);
  });
});
