import { BackupOfferingDeleted, BackupOfferingImportRequested, Streams } from '@strata/domain';
import { RecordedEvent } from '@strata/event-store';
import { managementJobId } from '@strata/jobs';
import { jobsFor } from './dispatcher';

const offeringId = '5e2a7c91-3d4b-4f6a-8b1c-2d3e4f5a6b01';
const jobId = '7c9e1a3b-5d7f-4a2c-9e4b-6d8f0a2c4e02';
const nativeOfferingId = '3b1d0c52-7e2f-4c8a-9d11-5a6b7c8d9e01';
const zoneId = '6f1c1c3e-5a3a-4e0b-9a55-0c7d2c8f1a01';

function recorded<T>(type: string, data: T, streamId = Streams.backupOffering(offeringId)): RecordedEvent<T> {
  return { id: 'b1c2d3e4-f5a6-4b7c-8d9e-0f1a2b3c4d01', type, data, metadata: {}, streamId, streamRevision: 0, position: '42', createdAt: new Date('2026-11-22T10:00:00Z') };
}

const importRequested = recorded<BackupOfferingImportRequested['data']>('BackupOfferingImportRequested', {
  offeringId,
  jobId,
  name: 'gold',
  description: 'Gold backups',
  zoneId,
  nativeOfferingId,
  allowUserDrivenBackups: true,
  repositoryId: null,
  requestedAt: '2026-11-22T10:00:00.000Z',
});
const deleted = recorded<BackupOfferingDeleted['data']>('BackupOfferingDeleted', { offeringId, nativeOfferingId, deletedAt: '2026-11-22T11:00:00.000Z' });

describe('jobsFor', () => {
  it('asks for an import job, keyed by the async job id, when an import is requested', () => {
    expect(jobsFor(importRequested)).toEqual([{ job: { name: 'importBackupOffering', data: { offeringId, jobId } }, jobId: `import-${jobId}` }]);
    expect(managementJobId.importBackupOffering(jobId)).toBe(`import-${jobId}`);
  });

  it('asks for a release of the native offering, keyed by the offering id, when an offering is deleted', () => {
    expect(jobsFor(deleted)).toEqual([{ job: { name: 'releaseNativeOffering', data: { offeringId, nativeOfferingId } }, jobId: `release-${offeringId}` }]);
    expect(managementJobId.releaseNativeOffering(offeringId)).toBe(`release-${offeringId}`);
  });

  it('gives the same job ids when an event is read again (after a crash), so BullMQ adds nothing twice', () => {
    const again = { ...importRequested, id: 'ffffffff-f5a6-4b7c-8d9e-0f1a2b3c4d01', position: '99' };
    expect(jobsFor(again)).toEqual(jobsFor(importRequested));
    expect(jobsFor({ ...deleted, position: '100' })).toEqual(jobsFor(deleted));
  });

  it('gives different job ids to different imports and deletions', () => {
    const otherJob = '0d1e2f3a-4b5c-4d6e-8f7a-8b9c0d1e2f03';
    const otherOffering = 'aa2a7c91-3d4b-4f6a-8b1c-2d3e4f5a6b09';
    expect(jobsFor(recorded('BackupOfferingImportRequested', { ...importRequested.data, jobId: otherJob }))[0].jobId).not.toBe(jobsFor(importRequested)[0].jobId);
    expect(jobsFor(recorded('BackupOfferingDeleted', { ...deleted.data, offeringId: otherOffering }))[0].jobId).not.toBe(jobsFor(deleted)[0].jobId);
  });

  it('gives job ids that BullMQ accepts as custom ids (no ":", not an integer)', () => {
    for (const { jobId: id } of [...jobsFor(importRequested), ...jobsFor(deleted)]) {
      expect(id).not.toContain(':');
      expect(`${parseInt(id, 10)}`).not.toBe(id);
    }
  });

  it.each([
    ['BackupOfferingImported', { offeringId, jobId, repositoryId: '0a6e8f7e-0e41-4f0e-9a53-2e5c1a9b7d02', importedAt: '2026-11-22T10:01:00.000Z' }],
    ['BackupOfferingImportFailed', { offeringId, jobId, reason: 'no repository', failedAt: '2026-11-22T10:01:00.000Z' }],
    ['NativeBackupOfferingCreated', { offeringId: nativeOfferingId, name: 'gold', createdAt: '2026-11-22T10:00:00.000Z' }],
    ['NativeBackupOfferingImported', { offeringId: nativeOfferingId, backupOfferingId: offeringId }],
    ['NativeBackupOfferingReleased', { offeringId: nativeOfferingId, backupOfferingId: offeringId }],
    ['NativeBackupOfferingDeleted', { offeringId: nativeOfferingId, deletedAt: '2026-11-22T10:00:00.000Z' }],
    ['ZoneCreated', { zoneId, name: 'zone1', createdAt: '2026-11-22T10:00:00.000Z' }],
    ['SettingChanged', { name: 'backup.chain.size', value: '4' }],
    ['AsyncJobCreated', { jobId, command: 'importBackupOffering' }],
    ['AsyncJobSucceeded', { jobId }],
    ['ApiUserCreated', { userId: jobId }],
    ['SomethingNobodyKnows', {}],
  ])('asks for nothing on %s', (type, data) => {
    expect(jobsFor(recorded(type, data))).toEqual([]);
  });
});
