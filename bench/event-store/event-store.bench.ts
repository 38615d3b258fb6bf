import 'reflect-metadata';
import { randomBytes } from 'node:crypto';
import { Client } from 'pg';
import { loadConfig } from '@strata/config';
import { PostgresEventStore } from '@strata/event-store';
import { createDataSource, Projector, READ_MODEL_PROJECTIONS, runMigrations } from '@strata/read-models';
import { benchAppendAndRead } from './append-and-read.bench';
import { seedCatalogEvents } from './catalog-event-generator';

/*
 * bench/event-store: prints figures, asserts nothing (targets are in the issue, figures in the notes).
 * Runs against a throw-away database next to STRATA_DATABASE_URL (same server and user), dropped after.
 */
const REBUILD_EVENTS = 100_000;

async function withScratchDatabase<T>(baseUrl: string, run: (url: string) => Promise<T>): Promise<T> {
  const name = `strata_bench_${randomBytes(5).toString('hex')}`;
  const admin = new URL(baseUrl);
  admin.pathname = '/postgres';
  const client = new Client({ connectionString: admin.toString() });
  await client.connect();
  await client.query(`CREATE DATABASE ${name}`);
  const url = new URL(baseUrl);
  url.pathname = `/${name}`;
  try {
    await runMigrations(url.toString());
    return await run(url.toString());
  } finally {
    await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await client.end();
  }
}

async function benchRebuild(url: string): Promise<{ events: number; seconds: number; eventsPerSec: number }> {
  const store = new PostgresEventStore(url);
  const seeded = await seedCatalogEvents(store, REBUILD_EVENTS, 'bench');
  const db = createDataSource(url, { applicationName: 'strata-bench' });
  await db.initialize();
  const projector = new Projector(store, db, READ_MODEL_PROJECTIONS, { logger: { log: () => undefined, error: (m) => console.error(m) } });
  await projector.reset();
  const started = process.hrtime.bigint();
  const applied = await projector.runUntilCaughtUp();
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  if (applied !== seeded.events) throw new Error(`rebuild applied ${applied} events, expected ${seeded.events}`);
  await db.destroy();
  await store.close();
  return { events: applied, seconds, eventsPerSec: applied / seconds };
}

async function main(): Promise<void> {
  const config = loadConfig(process.env);
  console.log(`bench/event-store on ${new URL(config.databaseUrl).host} (PostgreSQL), node ${process.version}`);
  const io = await withScratchDatabase(config.databaseUrl, benchAppendAndRead);
  const rebuild = await withScratchDatabase(config.databaseUrl, benchRebuild);
  const row = (what: string, figure: string, target: string, ok: boolean) => console.log(`${what.padEnd(44)} ${figure.padStart(16)}   target ${target.padEnd(14)} ${ok ? 'met' : 'MISSED'}`);
  console.log('');
  row('append, 1 writer (1 event per append)', `${io.appendsPerSec1.toFixed(0)} /s`, '-', true);
  row('append, 8 writers (1 event per append)', `${io.appendsPerSec8.toFixed(0)} /s`, '>= 3,000 /s', io.appendsPerSec8 >= 3000);
  row('catch-up read of 200,000 events', `${io.catchUpEventsPerSec.toFixed(0)} /s`, '>= 50,000 /s', io.catchUpEventsPerSec >= 50_000);
  row(`projection rebuild of ${rebuild.events.toLocaleString('en')} events`, `${rebuild.seconds.toFixed(2)} s`, '< 10 s', rebuild.seconds < 10);
  console.log(`(rebuild rate ${rebuild.eventsPerSec.toFixed(0)} events/s)`);
}

main().catch((error: Error) => {
  console.error(`bench/event-store failed: ${error.message}`);
  process.exit(1);
});
