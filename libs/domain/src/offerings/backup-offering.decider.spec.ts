import { fold } from '../decider';
import { DomainError } from '../domain-error';
import { deciderSpecification } from '../testing/decider-specification';
import {
  BackupOfferingDeleted,
  BackupOfferingImported,
  BackupOfferingImportFailed,
  BackupOfferingImportRequested,
  BackupOfferingState,
  ImportTerms,
  backupOfferingDecider,
} from './backup-offering.decider';

const at = new Date('2026-11-22T10:00:00Z');
const later = new Date('2026-11-22T10:05:00Z');
const offeringId = '5e2a7c91-3d4b-4f6a-8b1c-2d3e4f5a6b01';
const jobId = '7c9e1a3b-5d7f-4a2c-9e4b-6d8f0a2c4e02';
const zoneId = '6f1c1c3e-5a3a-4e0b-9a55-0c7d2c8f1a01';
const nativeOfferingId = '3b1d0c52-7e2f-4c8a-9d11-5a6b7c8d9e01';
const repositoryId = '0a6e8f7e-0e41-4f0e-9a53-2e5c1a9b7d02';
const spec = deciderSpecification(backupOfferingDecider);

const terms: ImportTerms = { name: 'gold', description: 'Gold backups', zoneId, nativeOfferingId, allowUserDrivenBackups: true, repositoryId: null };

const requestImport = { type: 'RequestImport' as const, data: { ...terms, offeringId, jobId, at } };
const complete = { type: 'CompleteImport' as const, data: { offeringId, repositoryId, at: later } };
const fail = { type: 'FailImport' as const, data: { offeringId, reason: 'zone has no backup repository', at: later } };
const del = { type: 'DeleteBackupOffering' as const, data: { offeringId, at: later } };

const requested: BackupOfferingImportRequested = { type: 'BackupOfferingImportRequested', data: { ...terms, offeringId, jobId, requestedAt: at.toISOString() } };
const imported: BackupOfferingImported = { type: 'BackupOfferingImported', data: { offeringId, jobId, repositoryId, importedAt: later.toISOString() } };
const failed: BackupOfferingImportFailed = { type: 'BackupOfferingImportFailed', data: { offeringId, jobId, reason: 'zone has no backup repository', failedAt: later.toISOString() } };
const deleted: BackupOfferingDeleted = { type: 'BackupOfferingDeleted', data: { offeringId, nativeOfferingId, deletedAt: later.toISOString() } };

describe('backup offering decider', () => {
  it('requests an import', () => spec.given([]).when(requestImport).then([requested]));

  it('keeps a pinned repository in the import terms', () => {
    const pinned = { ...requestImport, data: { ...requestImport.data, repositoryId } };
    spec.given([]).when(pinned).then([{ ...requested, data: { ...requested.data, repositoryId } }]);
  });

  it('refuses to request an import of an existing offering', () => spec.given([requested]).when(requestImport).thenThrows('conflict'));

  it('completes an import', () => spec.given([requested]).when(complete).then([imported]));

  it('completing twice decides nothing', () => spec.given([requested, imported]).when(complete).thenNothingHappens());

  it('refuses to complete an import that was never requested', () => spec.given([]).when(complete).thenThrows('conflict'));

  it('fails an import', () => spec.given([requested]).when(fail).then([failed]));

  it('failing twice decides nothing', () => spec.given([requested, failed]).when(fail).thenNothingHappens());

  it('refuses to complete a failed import', () => spec.given([requested, failed]).when(complete).thenThrows('conflict'));

  it('refuses to fail a completed import', () => spec.given([requested, imported]).when(fail).thenThrows('conflict'));

  it('deletes an active offering, naming its native offering', () => spec.given([requested, imported]).when(del).then([deleted]));

  it('deletes a failed offering', () => spec.given([requested, failed]).when(del).then([deleted]));

  it('refuses to delete an offering while it is being imported', () => spec.given([requested]).when(del).thenThrows('in_use'));

  it('refuses to delete an unknown offering, naming id', () => spec.given([]).when(del).thenThrows('not_found', 'id'));

  it('refuses to delete an offering twice, naming id', () => spec.given([requested, imported, deleted]).when(del).thenThrows('not_found', 'id'));

  it('refuses to delete an offering that has VMs assigned', () => {
    // No event assigns VMs yet, so the state is built by hand from an active offering.
    const active = fold(backupOfferingDecider, [requested, imported]);
    const state: BackupOfferingState = { ...active, assignedVms: ['c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e05'] };
    let error: unknown;
    try {
      backupOfferingDecider.decide(del, state);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(DomainError);
    expect((error as DomainError).kind).toBe('in_use');
    expect((error as DomainError).message).toContain('gold');
  });

  it('keeps the terms, the job and the chosen repository in its state', () => {
    expect(fold(backupOfferingDecider, [requested, imported])).toEqual({
      status: 'active',
      offeringId,
      jobId,
      terms,
      repositoryId,
      failureReason: null,
      assignedVms: [],
    });
  });

  it('keeps the failure reason in its state', () => {
    const state = fold(backupOfferingDecider, [requested, failed]);
    expect(state.status).toBe('failed');
    expect(state.failureReason).toBe('zone has no backup repository');
  });
});
