import { deciderSpecification } from '../testing/decider-specification';
import { NativeOfferingCreated, NativeOfferingDeleted, NativeOfferingImported, NativeOfferingReleased, NativeOfferingTerms, nativeOfferingDecider } from './native-offering.decider';

const at = new Date('2026-11-22T10:00:00Z');
const offeringId = '3b1d0c52-7e2f-4c8a-9d11-5a6b7c8d9e01';
const backupOfferingId = 'a4c2e6f8-1b3d-4e5f-8a9b-0c1d2e3f4a02';
const spec = deciderSpecification(nativeOfferingDecider);

const terms: NativeOfferingTerms = {
  name: 'gold',
  compress: true,
  validate: false,
  validationSteps: ['screenshot'],
  allowQuickRestore: false,
  allowExtractFile: false,
  backupChainSize: null,
  compressionLibrary: 'zstd',
};
const create = { type: 'CreateNativeOffering' as const, data: { ...terms, offeringId, at } };
const del = { type: 'DeleteNativeOffering' as const, data: { offeringId, at } };
const link = { type: 'LinkImportedOffering' as const, data: { offeringId, backupOfferingId } };
const release = { type: 'ReleaseImportedOffering' as const, data: { offeringId, backupOfferingId } };

const created: NativeOfferingCreated = { type: 'NativeBackupOfferingCreated', data: { ...terms, offeringId, createdAt: at.toISOString() } };
const deleted: NativeOfferingDeleted = { type: 'NativeBackupOfferingDeleted', data: { offeringId, deletedAt: at.toISOString() } };
const imported: NativeOfferingImported = { type: 'NativeBackupOfferingImported', data: { offeringId, backupOfferingId } };
const released: NativeOfferingReleased = { type: 'NativeBackupOfferingReleased', data: { offeringId, backupOfferingId } };

describe('native offering decider', () => {
  it('creates a native offering', () => spec.given([]).when(create).then([created]));

  it('refuses to create a native offering twice', () => spec.given([created]).when(create).thenThrows('conflict'));

  it('refuses to re-create a deleted native offering under the same id', () => spec.given([created, deleted]).when(create).thenThrows('conflict'));

  it('deletes a native offering', () => spec.given([created]).when(del).then([deleted]));

  it('refuses to delete an unknown native offering, naming id', () => spec.given([]).when(del).thenThrows('not_found', 'id'));

  it('refuses to delete a native offering twice, naming id', () => spec.given([created, deleted]).when(del).thenThrows('not_found', 'id'));

  it('refuses to delete a native offering while an imported offering uses it', () => spec.given([created, imported]).when(del).thenThrows('in_use'));

  it('links an imported offering', () => spec.given([created]).when(link).then([imported]));

  it('links idempotently: linking twice decides nothing', () => spec.given([created, imported]).when(link).thenNothingHappens());

  it('refuses to link to an unknown native offering, naming externalid', () => spec.given([]).when(link).thenThrows('not_found', 'externalid'));

  it('refuses to link to a deleted native offering, naming externalid', () => spec.given([created, deleted]).when(link).thenThrows('not_found', 'externalid'));

  it('releases a link', () => spec.given([created, imported]).when(release).then([released]));

  it('deletes a native offering once its link is released', () => spec.given([created, imported, released]).when(del).then([deleted]));

  it('a second imported offering keeps it in use after the first is released', () => {
    const other = { ...imported, data: { offeringId, backupOfferingId: '0f9e8d7c-6b5a-4d3c-8b2a-1f0e9d8c7b03' } };
    spec.given([created, imported, other, released]).when(del).thenThrows('in_use');
  });

  it('releasing an unknown link decides nothing', () => spec.given([created]).when(release).thenNothingHappens());

  it('releasing an already released link decides nothing', () => spec.given([created, imported, released]).when(release).thenNothingHappens());

  it('keeps the terms in its state', () => {
    const state = [created].reduce(nativeOfferingDecider.evolve, nativeOfferingDecider.initialState());
    expect(state).toEqual({ status: 'active', terms, importedBy: [] });
  });
});
