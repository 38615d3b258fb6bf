import { deterministicId } from '@strata/application';
import { Streams } from '@strata/domain';
import { AppendResult, EventStore, NewEvent } from '@strata/event-store';

const EVENTS_PER_UNIT = 15;

function unit(seed: string, i: number): [string, Omit<NewEvent, 'id'>[]][] {
  const id = (what: string) => deterministicId(seed, String(i), what);
  const zoneId = id('zone');
  const native = id('native');
  const offering = id('offering');
  const job = id('job');
  const at = new Date(Date.UTC(2026, 0, 1) + i * 1000).toISOString();
  const repo = (n: number) => ({
    zoneId,
    repositoryId: id(`repo${n}`),
    name: `nas-${n}`,
    address: `nas${n}.example:/export/z${i}`,
    type: 'nfs',
    mountOptions: 'vers=4.1',
    encryptedCredentials: null,
    capacityBytes: (i % 7) * 1e12,
    createdAt: at,
  });
  return [
    [
      Streams.zone(zoneId),
      [
        { type: 'ZoneCreated', data: { zoneId, name: `zone-${i}`, createdAt: at } },
        { type: 'BackupRepositoryAdded', data: repo(1) },
        { type: 'BackupRepositoryAdded', data: repo(2) },
        { type: 'BackupRepositoryUpdated', data: { zoneId, repositoryId: id('repo1'), mountOptions: 'vers=3', updatedAt: at } },
        { type: 'BackupRepositoryDeleted', data: { zoneId, repositoryId: id('repo2'), deletedAt: at } },
      ],
    ],
    [
      Streams.nativeOffering(native),
      [
        {
          type: 'NativeBackupOfferingCreated',
          data: { offeringId: native, name: `gold-${i}`, compress: i % 2 === 0, validate: false, validationSteps: ['screenshot'], allowQuickRestore: true, allowExtractFile: false, backupChainSize: i % 5 === 0 ? null : i % 10, compressionLibrary: 'zstd', createdAt: at },
        },
        { type: 'NativeBackupOfferingImported', data: { offeringId: native, backupOfferingId: offering } },
        { type: 'NativeBackupOfferingReleased', data: { offeringId: native, backupOfferingId: offering } },
      ],
    ],
    [
      Streams.backupOffering(offering),
      [
        { type: 'BackupOfferingImportRequested', data: { offeringId: offering, jobId: job, name: `gold-${i}`, description: 'seeded', zoneId, nativeOfferingId: native, allowUserDrivenBackups: true, repositoryId: null, requestedAt: at } },
        { type: 'BackupOfferingImported', data: { offeringId: offering, jobId: job, repositoryId: id('repo1'), importedAt: at } },
      ],
    ],
    [
      Streams.settings(zoneId),
      [
        { type: 'SettingChanged', data: { name: 'backup.chain.size', scope: 'zone', zoneId, value: String(i % 9), secret: false, changedAt: at, changedBy: 'seed' } },
        { type: 'SettingChanged', data: { name: 'knib.timeout', scope: 'zone', zoneId, value: String(3600 + i), secret: false, changedAt: at, changedBy: 'seed' } },
      ],
    ],
    [
      Streams.asyncJob(job),
      [
        { type: 'AsyncJobCreated', data: { jobId: job, command: 'importBackupOffering', userId: id('user'), instanceType: 'BackupOffering', instanceId: offering, createdAt: at } },
        { type: 'AsyncJobProgressed', data: { jobId: job, progress: 50, bytesDone: 1024 * i, bytesTotal: 2048 * i } },
        { type: 'AsyncJobSucceeded', data: { jobId: job, resultType: 'object', result: { backupoffering: { id: offering } }, completedAt: at } },
      ],
    ],
  ];
}

/**
 * Appends at least `count` realistic catalog events (zones, repositories, offerings, settings, async
 * jobs) with ids derived from `seed`, `concurrency` appends at a time. Returns the last append.
 */
export async function seedCatalogEvents(store: EventStore, count: number, seed = 'seed', concurrency = 8): Promise<{ events: number; last: AppendResult | null }> {
  const units = Math.ceil(count / EVENTS_PER_UNIT);
  let next = 0;
  let last: AppendResult | null = null;
  const worker = async () => {
    for (;;) {
      const i = next++;
      if (i >= units) return;
      for (const [stream, events] of unit(seed, i)) {
        const withIds = events.map((e, n) => ({ ...e, id: deterministicId(seed, stream, String(n)) }));
        const result = await store.append(stream, withIds, 'no_stream');
        if (!last || store.comparePositions(result.position, last.position) > 0) last = result;
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return { events: units * EVENTS_PER_UNIT, last };
}
