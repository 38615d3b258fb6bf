import { randomBytes } from 'node:crypto';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'pg';
import { ApiClient } from '../support/api-client';
import { createTestDatabase, TestDatabase } from '../support/database';
import { createTestDomain, ExpectedDisks, TestDomain, useLibvirtCleanup, writeScattered } from '../support/libvirt';
import { requireBuild, runStrata, startStrata, StrataProcess, testEnv, until } from '../support/strata-process';

type Role = 'api' | 'projector' | 'dispatcher' | 'agent';

/**
 * Exactly-once in effect (issue 3, point 5): the management plane runs as separate processes (API only,
 * projector, dispatcher) plus the agent; each is SIGKILLed at least once while backups are requested and
 * run, then restarted. Every request ends as exactly one completed backup, each backup's events appear
 * once, the read models equal a rebuild from the events, and every backup's content is exact.
 */
describe('exactly-once backups while every process is killed (real processes, real libvirt)', () => {
  useLibvirtCleanup();
  let db: TestDatabase;
  let env: NodeJS.ProcessEnv;
  let api: ApiClient;
  let domain: TestDomain;
  let expected: ExpectedDisks;
  let repoDir: string;
  const procs: Partial<Record<Role, StrataProcess>> = {};
  const hostName = `strata-e2e-${randomBytes(3).toString('hex')}`;
  const args: Record<Role, string[]> = { api: ['api', '--only-api'], projector: ['projector'], dispatcher: ['dispatcher'], agent: ['agent'] };

  function start(role: Role): StrataProcess {
    const e =
      role === 'agent'
        ? { PATH: process.env.PATH, HOME: process.env.HOME, STRATA_AGENT_HOST_NAME: hostName, STRATA_AGENT_ZONE: 'once-zone', STRATA_REDIS_URL: env.STRATA_REDIS_URL, STRATA_QUEUE_PREFIX: env.STRATA_QUEUE_PREFIX, STRATA_AGENT_HEARTBEAT_SECONDS: '1' }
        : env;
    procs[role] = startStrata(args[role], e);
    return procs[role]!;
  }

  async function kill(role: Role): Promise<void> {
    procs[role]!.child.kill('SIGKILL');
    await procs[role]!.exited;
  }

  async function startApi(): Promise<void> {
    const p = start('api');
    const endpoint = await until(async () => /listening on (\S+)/.exec(p.output())?.[1], 30_000, 'the API to listen', 50);
    api = new ApiClient(new URL(endpoint).origin, keys.apikey, keys.secretkey);
  }

  const ok = async (command: string, params: Record<string, string>) => {
    const r = await api.call(command, params);
    if (r.status !== 200) throw new Error(`${command}: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body[`${command.toLowerCase()}response`] as Record<string, unknown>;
  };
  let keys: { apikey: string; secretkey: string };

  beforeAll(async () => {
    requireBuild();
    db = await createTestDatabase();
    env = testEnv(db.url, { STRATA_API_PORT: '0', STRATA_API_HOST: '127.0.0.1' });
    expect((await runStrata(['migrate'], env)).code).toBe(0);
    start('projector');
    start('dispatcher');
    keys = JSON.parse((await runStrata(['keys', 'create', '--role', 'Admin', '--name', 'admin', '--json'], env)).stdout);
    await startApi();
    const zone = (await ok('createZone', { name: 'once-zone' })).zone as { id: string };
    repoDir = await mkdtemp(join(tmpdir(), 'strata-repo-'));
    await ok('addBackupRepository', { name: 'local', type: 'local', address: repoDir, zoneid: zone.id });
    const native = (await ok('createNativeBackupOffering', { name: 'gold' })).nativebackupoffering as { id: string };
    const imported = await ok('importBackupOffering', { name: 'gold', description: 'gold', zoneid: zone.id, externalid: native.id, allowuserdrivenbackups: 'true' });
    const offering = (await api.waitForJob(imported.jobid as string)).jobresult.backupoffering as { id: string };
    start('agent');
    domain = await createTestDomain({ disks: [{ sizeMiB: 64 }], running: true });
    expected = await ExpectedDisks.forDomain(domain);
    await until(async () => ((await ok('listVirtualMachines', { id: domain.uuid })).virtualmachine as unknown[] | undefined)?.length, 30_000, 'the VM to be listed', 200);
    await api.waitForJob((await ok('assignVirtualMachineToBackupOffering', { virtualmachineid: domain.uuid, backupofferingid: offering.id })).jobid as string);
  });

  afterAll(async () => {
    for (const p of Object.values(procs)) p?.child.kill('SIGKILL');
    await domain?.destroy();
    await db?.drop();
  });

  /** Requests a backup, runs `disturb` right after the request was accepted, then waits for the outcome. */
  async function backupWhile(label: string, disturb: () => Promise<void>): Promise<{ id: string; type: string; status: string; chainid: string }> {
    await writeScattered(domain, 'vda', { seed: label, count: 8 }, { expected });
    await expected.snapshot(label);
    const started = await ok('createBackup', { virtualmachineid: domain.uuid, name: label });
    await disturb();
    const job = await api.waitForJob(started.jobid as string, 120_000);
    expect({ label, jobstatus: job.jobstatus, result: job.jobresult }).toMatchObject({ jobstatus: 1 });
    const b = ((await ok('listBackups', { id: started.id as string })).backup as { id: string; type: string; status: string; chainid: string }[])[0];
    expect(b.status).toBe('BackedUp');
    const vol = ((await ok('listVirtualMachines', { id: domain.uuid })).virtualmachine as { volumes: { id: string }[] }[])[0].volumes[0].id;
    expect(await expected.get('vda').compareWith(join(repoDir, domain.uuid, b.chainid, b.id, `${vol}.qcow2`), label, { format: 'qcow2' })).toMatchObject({ equal: true });
    return b;
  }

  it('kills the API, the dispatcher, the projector and the agent mid-backup; every request ends as one exact backup', async () => {
    await backupWhile('api-killed', async () => {
      await kill('api');
      await startApi();
    });
    await backupWhile('dispatcher-killed', async () => {
      await kill('dispatcher');
      start('dispatcher');
    });
    await backupWhile('projector-killed', async () => {
      await kill('projector');
      start('projector');
    });
    await backupWhile('agent-killed', async () => {
      await kill('agent');
      start('agent');
    });
    await backupWhile('all-killed', async () => {
      await Promise.all((['dispatcher', 'projector', 'agent'] as Role[]).map(kill));
      (['dispatcher', 'projector', 'agent'] as Role[]).forEach(start);
    });

    const client = new Client({ connectionString: db.url });
    await client.connect();
    try {
      // Each backup's events appear once, in order: requested, (started), completed.
      const { rows } = await client.query<{ backup: string; types: string[] }>(
        `SELECT data->>'backupId' AS backup, array_agg(type ORDER BY stream_revision) AS types FROM events
         WHERE stream_id = $1 AND data ? 'backupId' GROUP BY 1`,
        [`vmBackups-${domain.uuid}`],
      );
      expect(rows).toHaveLength(5);
      for (const r of rows) {
        expect(r.types.filter((t) => t === 'BackupRequested')).toHaveLength(1);
        expect(r.types.filter((t) => t === 'BackupCompleted')).toHaveLength(1);
        expect(r.types.filter((t) => t === 'BackupStarted').length).toBeLessThanOrEqual(2); // a redelivered job starts again
        expect(r.types).not.toContain('BackupFailed');
        expect(r.types[0]).toBe('BackupRequested');
        expect(r.types[r.types.length - 1]).toBe('BackupCompleted');
      }
      const listed = (await ok('listBackups', { virtualmachineid: domain.uuid })).backup as unknown[];
      expect(listed).toHaveLength(5);
      // No libvirt job left, and only strata's checkpoints of completed backups remain.
      expect((await domainJob(domain.name)).trim()).toMatch(/None|none/);
      // The read models equal a rebuild from the events.
      const snapshot = async () => (await client.query(`SELECT * FROM backups ORDER BY id`)).rows;
      await until(async () => (await client.query(`SELECT 1 FROM backups WHERE status <> 'BackedUp'`)).rowCount === 0, 10_000, 'the projector to catch up');
      const before = await snapshot();
      await kill('projector');
      expect((await runStrata(['projector', '--rebuild', '--exit-when-caught-up'], env)).code).toBe(0);
      expect(await snapshot()).toEqual(before);
      start('projector');
    } finally {
      await client.end();
    }
  });
});

async function domainJob(name: string): Promise<string> {
  const { execFile } = await import('node:child_process');
  return new Promise((resolve) => execFile('virsh', ['-c', 'qemu:///system', 'domjobinfo', name], (_e, stdout) => resolve(stdout)));
}
