import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Client } from 'pg';
import { ApiClient } from '../support/api-client';
import { agentEnv, assignWhenListed, okCaller, waitHostUp } from '../support/backup-fixture';
import { compressionApi, CompressionJob, createBackupRetryingSwaps, createCompressCatalog, readStream } from '../support/compression-fixture';
import { createTestDomain, TestDomain, useLibvirtCleanup, writeRandom } from '../support/libvirt';
import { RunningPlane, startManagementPlane } from '../support/management-plane';
import { ProcessOverlapRecorder, qemuImgConvertOf } from '../support/process-overlap';
import { startStrata, stopAll, StrataProcess, until } from '../support/strata-process';

/** Running (a zombie waiting for a reaper counts as dead). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/**
 * Issue 5, point 5 (limits): with small settings, the qemu-img processes that really run are recorded
 * (sampled from /proc every 20 ms) and never exceed backup.compression.max.concurrent.compressions.per.host
 * on a host nor backup.compression.max.concurrent.operations in the zone, also while the management plane
 * is SIGKILLed and restarted mid-run. backup.compression.task.enabled=false holds every job back, and
 * nothing is lost. Compressions are slowed with backup.compression.rate.limit (1 MiB/s of 6 MiB each).
 */
describe('compression limits (real processes, three hosts in one zone)', () => {
  useLibvirtCleanup();
  let plane: RunningPlane;
  let api: ApiClient;
  let zoneId: string;
  let repoDir: string;
  let domain: TestDomain;
  const agents: Record<string, StrataProcess> = {};
  const suffix = randomBytes(3).toString('hex');
  const hostA = `strata-e2e-a-${suffix}`;
  const ok = okCaller(() => api);
  const c = compressionApi(() => api);
  const output = () => Object.entries(agents).map(([name, a]) => `--- ${name}\n${a.output().slice(-1500)}`).join('\n');

  /** `n` isolated (full) backups of the VM, one after the other; their compressions wait (task disabled). */
  async function isolatedBackups(n: number): Promise<string[]> {
    const ids: string[] = [];
    for (let i = 0; i < n; i++) {
      const started = await createBackupRetryingSwaps(api, { virtualmachineid: domain.uuid, isolated: 'true' });
      const job = await api.waitForJob(started.jobid, 120_000);
      if (job.jobstatus !== 1) throw new Error(`backup failed: ${JSON.stringify(job.jobresult)} ${output()}`);
      ids.push(started.id);
    }
    return ids;
  }

  /** Polls the job list while compressions run: the API's own view must respect the limits too. */
  function watchApi(): { stop: () => Promise<{ executing: number; byHost: Record<string, number> }> } {
    let stopped = false;
    const seen = { executing: 0, byHost: {} as Record<string, number> };
    const loop = (async () => {
      while (!stopped) {
        const running = await c.jobs({ executing: 'true' }).catch(() => [] as CompressionJob[]);
        const starting = running.filter((j) => j.type === 'Starting');
        seen.executing = Math.max(seen.executing, starting.length);
        for (const j of starting) seen.byHost[j.hostid!] = Math.max(seen.byHost[j.hostid!] ?? 0, starting.filter((x) => x.hostid === j.hostid).length);
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    return {
      async stop() {
        stopped = true;
        await loop;
        return seen;
      },
    };
  }

  beforeAll(async () => {
    plane = await startManagementPlane();
    api = new ApiClient(new URL(plane.endpoint).origin, plane.admin.apikey, plane.admin.secretkey);
    const catalog = await createCompressCatalog(api, 'limits-zone');
    zoneId = catalog.zoneId;
    repoDir = catalog.repoDir;
    agents.a = startStrata(['agent'], agentEnv(plane, hostA, 'limits-zone'));
    domain = await createTestDomain({ disks: [{ sizeMiB: 32 }], running: true });
    await assignWhenListed(api, domain.uuid, catalog.offeringId, output);
    // 6 MiB of incompressible data: at 1 MiB/s each compression runs about 6 s.
    await writeRandom(domain, 'vda', { offset: 0, length: 6 << 20, seed: 'limits' });
    await c.setting('backup.compression.rate.limit', 1);
    await c.setting('backup.compression.coroutines', 2);
  });

  afterAll(async () => {
    await stopAll(Object.values(agents));
    await domain?.destroy();
    await plane?.stop();
  });

  it('per host: task.enabled=false holds every job (nothing lost); then never more than 2 qemu-img at once on the host', async () => {
    await c.setting('backup.compression.task.enabled', false);
    await c.setting('backup.compression.max.concurrent.compressions.per.host', 2);
    await c.setting('backup.compression.max.concurrent.operations', -1, zoneId);
    const recorder = new ProcessOverlapRecorder(qemuImgConvertOf(repoDir));
    recorder.start();
    try {
      const ids = await isolatedBackups(5);
      const waiting = await until(async () => ((await c.jobs({ scheduled: 'true' })).length === 5 ? c.jobs({ scheduled: 'true' }) : undefined), 30_000, '5 scheduled jobs');
      expect(waiting.every((j) => j.type === 'Starting' && j.status === 'Scheduled' && j.attempts === 0)).toBe(true);
      await new Promise((r) => setTimeout(r, 3000));
      expect(await c.jobs({ executing: 'true' })).toEqual([]);
      expect(recorder.processes.size).toBe(0);
      expect((await c.backup(ids[0])).compressionstatus).toBe('Uncompressed');

      const watch = watchApi();
      await c.setting('backup.compression.task.enabled', true);
      const statuses = new Set<string>();
      const polling = (async () => {
        for (let i = 0; i < 400 && statuses.size < 3; i++) {
          statuses.add((await c.backup(ids[4])).compressionstatus);
          await new Promise((r) => setTimeout(r, 50));
        }
      })();
      await c.untilCompressed(ids, 180_000, output);
      await polling;
      const apiView = await watch.stop();
      await recorder.stop();

      const hostAId = (await c.jobs({ backupid: ids[0], type: 'Starting' }))[0].hostid!;
      expect(recorder.maxConcurrent).toBe(2); // the limit, and reached
      expect(recorder.maxConcurrentByParent.get(agents.a.child.pid!)).toBe(2);
      expect(recorder.processes.size).toBe(5);
      expect(apiView.executing).toBeLessThanOrEqual(2);
      expect(apiView.byHost[hostAId] ?? 0).toBeLessThanOrEqual(2);
      expect(statuses.has('Compressing')).toBe(true);
      // -m and -r from the settings, written through the compress filter (compression-chain checks the
      // files: zstd, backing file, content; the driver's int test that they match what convert -c makes).
      for (const p of recorder.processes.values()) {
        const args = p.argv.join(' ');
        expect(args).toContain('-m 2');
        expect(args).toContain(`-r ${1024 * 1024}`);
        expect(args).toContain('driver=compress,file.driver=qcow2');
      }
    } finally {
      await recorder.stop();
    }
  });

  it('a host override of the per-host limit: with the global value 2 and host A\'s own value 1, host A runs one qemu-img at a time', async () => {
    const perHost = 'backup.compression.max.concurrent.compressions.per.host';
    await c.setting('backup.compression.task.enabled', false);
    await c.setting(perHost, 2);
    await c.setting('backup.compression.max.concurrent.operations', -1, zoneId);
    const hostAId = ((await ok('listHosts', {})).host as { id: string; name: string }[]).find((h) => h.name === hostA)!.id;
    const set = (await ok('updateConfiguration', { name: perHost, value: '1', hostid: hostAId })).configuration;
    expect(set).toMatchObject({ name: perHost, value: '1', scope: 'host', hostid: hostAId, defaultvalue: '5' });
    const onHost = (await ok('listConfigurations', { hostid: hostAId })).configuration as { name: string; value: string; scope: string }[];
    expect(onHost).toEqual([expect.objectContaining({ name: perHost, value: '1', scope: 'host', hostid: hostAId })]);
    expect(((await ok('listConfigurations', { name: perHost })).configuration as { value: string }[])[0]).toMatchObject({ value: '2', scope: 'global', hostoverride: true });
    const recorder = new ProcessOverlapRecorder(qemuImgConvertOf(repoDir));
    recorder.start();
    try {
      const ids = await isolatedBackups(3);
      await until(async () => (await c.jobs({ scheduled: 'true' })).length === 3, 30_000, '3 scheduled jobs');
      const watch = watchApi();
      await c.setting('backup.compression.task.enabled', true);
      await c.untilCompressed(ids, 180_000, output);
      const apiView = await watch.stop();
      await recorder.stop();
      // Host A is the zone's only host and the zone is unlimited: only its own value can hold it to 1.
      expect(recorder.processes.size).toBe(3);
      expect(recorder.maxConcurrent).toBe(1);
      expect(recorder.maxConcurrentByParent.get(agents.a.child.pid!)).toBe(1);
      expect(apiView.byHost[hostAId] ?? 0).toBeLessThanOrEqual(1);
      for (const id of ids) expect((await c.jobs({ backupid: id, type: 'Starting' }))[0]).toMatchObject({ status: 'Done', attempts: 1, hostid: hostAId });
    } finally {
      await recorder.stop();
      // The following cases count on host A taking the global value (2) again.
      await ok('updateConfiguration', { name: perHost, value: '2', hostid: hostAId });
    }
  });

  it('per zone, over three hosts: never more than 3 at once in the zone nor 2 on a host, through a SIGKILL and restart of the management plane and the loss of the scheduler\'s lock session', async () => {
    agents.b = startStrata(['agent'], agentEnv(plane, `strata-e2e-b-${suffix}`, 'limits-zone', { STRATA_LIBVIRT_URI: 'test:///default' }));
    agents.c = startStrata(['agent'], agentEnv(plane, `strata-e2e-c-${suffix}`, 'limits-zone', { STRATA_LIBVIRT_URI: 'test:///default' }));
    await waitHostUp(api, `strata-e2e-b-${suffix}`);
    await waitHostUp(api, `strata-e2e-c-${suffix}`);
    await c.setting('backup.compression.task.enabled', false);
    await c.setting('backup.compression.max.concurrent.compressions.per.host', 2);
    await c.setting('backup.compression.max.concurrent.operations', 3, zoneId);
    const recorder = new ProcessOverlapRecorder(qemuImgConvertOf(repoDir));
    recorder.start();
    try {
      const ids = await isolatedBackups(9);
      await until(async () => (await c.jobs({ scheduled: 'true' })).length === 9, 30_000, '9 scheduled jobs');
      const watch = watchApi();
      await c.setting('backup.compression.task.enabled', true);

      // Mid-run (3 compressions running), the whole management plane dies and comes back.
      await until(async () => recorder.running().length === 3, 60_000, `3 compressions to run (${recorder.running().length}) ${output()}`, 50);
      const apiView1 = await watch.stop();
      plane.api.child.kill('SIGKILL');
      await plane.api.exited;
      plane.api = startStrata(['api'], plane.env);
      const endpoint = await until(async () => /listening on (\S+)/.exec(plane.api.output())?.[1], 30_000, 'strata api to listen again', 50);
      api = new ApiClient(new URL(endpoint).origin, plane.admin.apikey, plane.admin.secretkey);
      const watch2 = watchApi();

      // Then the scheduler's lock session is killed under it: it must stop deciding, take the lock again
      // and go on, still within the limits.
      await until(async () => /compression scheduler active/.test(plane.api.output()), 30_000, 'the new compression scheduler to be active', 50);
      const pg = new Client({ connectionString: plane.db.url });
      await pg.connect();
      try {
        const killed = await pg.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'strata-compression-scheduler' AND datname = current_database()`);
        expect(killed.rowCount).toBe(1);
      } finally {
        await pg.end();
      }
      await until(async () => (plane.api.output().match(/compression scheduler active/g) ?? []).length >= 2, 30_000, `the scheduler to take its lock again (${plane.api.output().slice(-2000)})`, 50);
      expect(plane.api.output()).toContain('lost the connection that holds its lock');

      await c.untilCompressed(ids, 300_000, output);
      const apiView2 = await watch2.stop();
      await recorder.stop();

      expect(recorder.maxConcurrent).toBe(3); // the zone's limit, and reached
      for (const name of ['a', 'b', 'c']) expect(recorder.maxConcurrentByParent.get(agents[name].child.pid!) ?? 0).toBeLessThanOrEqual(2);
      const parents = new Set([...recorder.processes.values()].map((p) => p.ppid));
      expect(parents.size).toBeGreaterThanOrEqual(2); // spread over hosts, since one host may run only 2
      expect(recorder.processes.size).toBe(9);
      for (const view of [apiView1, apiView2]) {
        expect(view.executing).toBeLessThanOrEqual(3);
        for (const n of Object.values(view.byHost)) expect(n).toBeLessThanOrEqual(2);
      }
      // Each job ran once: one Starting attempt per backup, nothing retried, nothing lost.
      for (const id of ids) expect((await c.jobs({ backupid: id, type: 'Starting' }))[0]).toMatchObject({ status: 'Done', attempts: 1 });
      const events = await readStream(plane.db.url, `vmBackups-${domain.uuid}`);
      expect(events.filter((e) => e.type === 'CompressionAttemptFailed')).toEqual([]);
    } finally {
      await recorder.stop();
    }
  });

  it('an agent SIGKILLed mid-compression takes its qemu-img with it; the same attempt is handed out again and finishes, within the limits', async () => {
    await c.setting('backup.compression.task.enabled', false);
    await c.setting('backup.compression.max.concurrent.compressions.per.host', 2);
    await c.setting('backup.compression.max.concurrent.operations', 3, zoneId);
    const recorder = new ProcessOverlapRecorder(qemuImgConvertOf(repoDir));
    recorder.start();
    try {
      const ids = await isolatedBackups(4);
      await until(async () => (await c.jobs({ scheduled: 'true' })).length === 4, 30_000, '4 scheduled jobs');
      await c.setting('backup.compression.task.enabled', true);
      const killed = agents.a;
      await until(async () => recorder.running().filter((p) => p.ppid === killed.child.pid).length === 2, 60_000, `2 compressions on host A ${output()}`, 50);
      const victims = recorder.running().filter((p) => p.ppid === killed.child.pid);
      killed.child.kill('SIGKILL');
      await killed.exited;
      // The kernel kills them with their parent (setpriv --pdeathsig): no orphan keeps writing, or runs uncounted.
      await until(async () => victims.every((v) => !alive(v.pid)), 2000, `qemu-img ${victims.map((v) => v.pid).join(', ')} to die with the agent`, 20);
      agents.a = startStrata(['agent'], agentEnv(plane, hostA, 'limits-zone'));
      await c.untilCompressed(ids, 180_000, output);
      await recorder.stop();
      expect(recorder.maxConcurrent).toBeLessThanOrEqual(3);
      for (const [, n] of recorder.maxConcurrentByParent) expect(n).toBeLessThanOrEqual(2);
      // The interrupted attempts were redelivered to the restarted agent (same attempt, no failure, no retry).
      for (const id of ids) expect((await c.jobs({ backupid: id, type: 'Starting' }))[0]).toMatchObject({ status: 'Done', attempts: 1 });
      const onNewAgent = [...recorder.processes.values()].filter((p) => p.ppid === agents.a.child.pid);
      expect(onNewAgent.length).toBeGreaterThanOrEqual(victims.length);
    } finally {
      await recorder.stop();
    }
  });

  it('hostid lists only the jobs executing on that host', async () => {
    await c.setting('backup.compression.task.enabled', false);
    const ids = await isolatedBackups(2);
    await until(async () => (await c.jobs({ scheduled: 'true' })).length === 2, 30_000, '2 scheduled jobs');
    await c.setting('backup.compression.task.enabled', true);
    const running = await until(async () => {
      const r = await c.jobs({ executing: 'true', type: 'Starting' });
      return r.length === 2 ? r : undefined;
    }, 30_000, 'two running Starting jobs', 50);
    for (const j of running) {
      const there = await c.jobs({ hostid: j.hostid! });
      expect(there.length).toBeGreaterThan(0);
      expect(there.every((x) => x.hostid === j.hostid && x.status === 'Running')).toBe(true);
    }
    const hosts = ((await ok('listHosts', {})).host as { id: string }[]).map((h) => h.id);
    const idle = hosts.find((h) => !running.some((j) => j.hostid === h));
    if (idle) expect(await c.jobs({ hostid: idle, type: 'Starting' })).toEqual([]);
    await c.untilCompressed(ids, 120_000, output);
  });
});
