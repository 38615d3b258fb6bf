import { Client } from 'pg';
import { createTestDatabase, TestDatabase } from '../support/database';
import { requireBuild, runStrata, testEnv } from '../support/strata-process';

describe('strata CLI', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    requireBuild();
    db = await createTestDatabase();
  });
  afterAll(async () => db?.drop());

  it.each([
    [{ STRATA_API_PORT: 'eighty' }, 'STRATA_API_PORT'],
    [{ STRATA_EVENT_STORE: 'mysql' }, 'STRATA_EVENT_STORE'],
    [{ STRATA_EVENT_STORE: 'esdb' }, 'STRATA_ESDB_URL'],
    [{ STRATA_REDIS_URL: 'http://127.0.0.1:6379' }, 'STRATA_REDIS_URL'],
    [{ STRATA_LOG_LEVEL: 'loud' }, 'STRATA_LOG_LEVEL'],
  ])('refuses a bad environment (%j) with one line naming the variable, before doing anything', async (extra, variable) => {
    const r = await runStrata(['api'], testEnv(db.url, extra), 20_000);
    expect(r.code).toBe(2);
    const lines = r.output.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(new RegExp(`^strata: configuration error: ${variable}`));
  });

  it('never prints a database password, even when it cannot connect', async () => {
    const r = await runStrata(['projector', '--exit-when-caught-up'], testEnv('postgres://strata:Hunter2Secret@127.0.0.1:1/strata'), 20_000);
    expect(r.code).toBe(1);
    expect(r.output).not.toContain('Hunter2Secret');
    expect(r.output.trim().split('\n')).toHaveLength(1);
  });

  it('migrate is idempotent, and keys create prints usable JSON without storing the secret in clear', async () => {
    const env = testEnv(db.url);
    expect((await runStrata(['migrate'], env)).code).toBe(0);
    const again = await runStrata(['migrate'], env);
    expect(again.code).toBe(0);
    expect(again.output).toContain('schema is up to date');
    const created = await runStrata(['keys', 'create', '--role', 'User', '--name', 'bob', '--json'], env);
    expect(created.code).toBe(0);
    const keys = JSON.parse(created.stdout) as { apikey: string; secretkey: string };
    expect(keys.apikey.length).toBeGreaterThan(40);
    expect(keys.secretkey.length).toBeGreaterThan(40);
    const client = new Client({ connectionString: db.url });
    await client.connect();
    const { rows } = await client.query(`SELECT count(*)::int AS n FROM events WHERE data::text LIKE $1 OR metadata::text LIKE $1`, [`%${keys.secretkey}%`]);
    await client.end();
    expect(rows[0].n).toBe(0);
  });

  it('explains bad usage in one line', async () => {
    const env = testEnv(db.url);
    const r = await runStrata(['keys', 'create', '--role', 'Root', '--name', 'x'], env);
    expect(r.code).not.toBe(0);
    expect(r.output).toContain('--role must be Admin or User');
    const unknown = await runStrata(['backup-everything'], env);
    expect(unknown.code).toBe(2);
    expect(unknown.output).toContain('unknown command');
  });
});
