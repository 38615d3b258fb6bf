import { randomUUID } from 'node:crypto';
import { PostgresEventStore, type NewEvent } from '@strata/event-store';

/*
 * Append throughput (one event per append, the command path, exact expected revisions) with 1 and with 8
 * concurrent writers sharing one store instance, as the request handlers of one API process do; and the
 * catch-up rate of a subscription reading 200,000 events from the beginning (projection rebuild).
 * Run it against a throw-away database: it leaves 200,000 events behind.
 * Targets: >= 3,000 appends/s with 8 writers, >= 50,000 events/s catch-up.
 */

export interface AppendAndReadFigures {
  appendsPerSec1: number;
  appendsPerSec8: number;
  catchUpEventsPerSec: number;
}

const APPEND_PHASE_MS = 3000;
const CATCH_UP_EVENTS = 200_000;
const CATCH_UP_BATCH = 2000;
const FILL_APPEND_SIZE = 1000;
const STREAMS_PER_WRITER = 50;

export async function benchAppendAndRead(databaseUrl: string): Promise<AppendAndReadFigures> {
  const store = new PostgresEventStore(databaseUrl, { poolSize: 12, applicationName: 'strata-bench' });
  try {
    const one = await appendPhase(store, 'benchSolo', 1);
    const eight = await appendPhase(store, 'benchEight', 8);
    const appendsPerSec1 = one.appends / one.seconds;
    const appendsPerSec8 = eight.appends / eight.seconds;
    console.log(`event store append, 1 writer:  ${Math.round(appendsPerSec1)} appends/s (${one.appends} in ${one.seconds.toFixed(1)} s)`);
    console.log(`event store append, 8 writers: ${Math.round(appendsPerSec8)} appends/s (${eight.appends} in ${eight.seconds.toFixed(1)} s)`);

    await fillTo(store, CATCH_UP_EVENTS - one.appends - eight.appends);
    const catchUp = await catchUpPhase(store, CATCH_UP_EVENTS);
    const catchUpEventsPerSec = catchUp.events / catchUp.seconds;
    console.log(`event store catch-up: ${Math.round(catchUpEventsPerSec)} events/s (${catchUp.events} in ${catchUp.seconds.toFixed(2)} s)`);
    return { appendsPerSec1, appendsPerSec8, catchUpEventsPerSec };
  } finally {
    await store.close();
  }
}

/** A representative event: the size and shape of a BackupCompleted with two volumes. */
function sampleEvent(n: number): NewEvent {
  const backupId = randomUUID();
  return {
    id: randomUUID(),
    type: 'BackupCompleted',
    data: {
      backupId,
      chainId: randomUUID(),
      type: n % 10 === 0 ? 'FULL' : 'INCREMENTAL',
      volumes: [
        { volumeId: randomUUID(), path: `${backupId}/root.qcow2`, sizeBytes: 21474836480, physicalBytes: 734003200 + n },
        { volumeId: randomUUID(), path: `${backupId}/data.qcow2`, sizeBytes: 107374182400, physicalBytes: 104857600 + n },
      ],
      completedAt: new Date().toISOString(),
    },
    metadata: { correlationId: backupId, causationId: backupId, schemaVersion: 1 },
  };
}

/** `writers` loops, each appending to its own streams with exact expected revisions, for a fixed time. */
async function appendPhase(store: PostgresEventStore, category: string, writers: number): Promise<{ appends: number; seconds: number }> {
  let appends = 0;
  const started = process.hrtime.bigint();
  const deadline = Date.now() + APPEND_PHASE_MS;
  await Promise.all(
    Array.from({ length: writers }, async (_, w) => {
      const revisions = new Array<number>(STREAMS_PER_WRITER).fill(-1);
      for (let n = 0; Date.now() < deadline; n++) {
        const s = n % STREAMS_PER_WRITER;
        const expected = revisions[s] < 0 ? 'no_stream' : revisions[s];
        const result = await store.append(`${category}-${w}x${s}`, [sampleEvent(n)], expected);
        revisions[s] = result.nextExpectedRevision;
        appends += 1;
      }
    }),
  );
  return { appends, seconds: Number(process.hrtime.bigint() - started) / 1e9 };
}

/** Bulk appends (many events per append) up to the catch-up volume; not measured. */
async function fillTo(store: PostgresEventStore, missing: number): Promise<void> {
  const streams = 200;
  const revisions = new Array<number>(streams).fill(-1);
  let done = 0;
  for (let n = 0; done < missing; n++) {
    const count = Math.min(FILL_APPEND_SIZE, missing - done);
    const s = n % streams;
    const events = Array.from({ length: count }, (_, i) => sampleEvent(done + i));
    const result = await store.append(`benchFill-${s}`, events, revisions[s] < 0 ? 'no_stream' : revisions[s]);
    revisions[s] = result.nextExpectedRevision;
    done += count;
  }
}

/** A subscription from the beginning, as a projection rebuild does, until `total` events arrived. */
async function catchUpPhase(store: PostgresEventStore, total: number): Promise<{ events: number; seconds: number }> {
  let events = 0;
  const started = process.hrtime.bigint();
  await new Promise<void>((resolve, reject) => {
    const subscription = store.subscribeToAll({
      batchSize: CATCH_UP_BATCH,
      onBatch: async (batch) => {
        events += batch.length;
      },
      onCaughtUp: () => {
        if (events >= total) void subscription.stop().then(resolve, reject);
      },
      onError: reject,
    });
  });
  return { events, seconds: Number(process.hrtime.bigint() - started) / 1e9 };
}
