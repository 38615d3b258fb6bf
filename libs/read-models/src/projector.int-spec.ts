import { Client } from 'pg';
import { PostgresEventStore } from '@strata/event-store';
import { seedCatalogEvents } from '../../../bench/event-store/catalog-event-generator';
import { createTestDatabase, TestDatabase } from '../../../test/support/database';
import { requireBuild, runStrata, startStrata, testEnv, until } from '../../../test/support/strata-process';
import { READ_MODEL_TABLES } from './entities';

async function snapshot(client: Client): Promise<Record<string, unknown[]>> {
  const out: Record<string, unknown[]> = {};
  for (const table of READ_MODEL_TABLES) {
    out[table] = (await client.query(`SELECT * FROM ${table} ORDER BY 1, 2`)).rows;
  }
  return out;
}

describe('projector crash safety (real PostgreSQL, real process)', () => {
  let db: TestDatabase;
  let client: Client;

  beforeAll(async () => {
    requireBuild();
    db = await createTestDatabase();
    client = new Client({ connectionString: db.url });
    await client.connect();
  });

  afterAll(async () => {
    await client?.end();
    await db?.drop();
  });

  it('a projector SIGKILLed while catching up on 20,000+ events resumes to the same read models as a fresh rebuild', async () => {
    const store = new PostgresEventStore(db.url);
    const seeded = await seedCatalogEvents(store, 21_000, 'crash');
    await store.close();
    expect(seeded.events).toBeGreaterThanOrEqual(20_000);
    const lastPosition = seeded.last!.position;
    const env = testEnv(db.url);
    const checkpoint = async () => (await client.query(`SELECT position FROM projection_checkpoints WHERE name = 'read-models'`)).rows[0]?.position as string | undefined;

    // Kill it as soon as it has committed its first batches, so that it dies mid catch-up.
    const first = startStrata(['projector'], env);
    const atKill = await until(checkpoint, 30_000, 'the first projected batch');
    first.child.kill('SIGKILL');
    await first.exited;
    const killedAt = await checkpoint();
    const zonesAtKill = Number((await client.query(`SELECT count(*) FROM zones`)).rows[0].count);
    expect(killedAt).toBeDefined();
    expect(killedAt).not.toBe(lastPosition); // really mid catch-up
    expect(zonesAtKill).toBeLessThan(seeded.events / 15);
    expect(atKill).toBeDefined();

    const second = startStrata(['projector'], env);
    await until(async () => (await checkpoint()) === lastPosition, 60_000, 'the restarted projector to catch up');
    second.child.kill('SIGTERM');
    expect(await second.exited).toBe(0);
    const resumed = await snapshot(client);

    const rebuild = await runStrata(['projector', '--rebuild', '--exit-when-caught-up'], env);
    expect(rebuild.code).toBe(0);
    expect(await checkpoint()).toBe(lastPosition);
    const rebuilt = await snapshot(client);

    expect(resumed.zones).toHaveLength(Math.ceil(21_000 / 15));
    expect(resumed.async_jobs.length).toBe(resumed.zones.length);
    expect(resumed).toEqual(rebuilt);
  });
});
