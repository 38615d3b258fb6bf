import { Decider, DomainEvent } from '../decider';
import { conflict, inUse, notFound } from '../domain-error';

export const VALIDATION_STEPS = ['wait_for_boot', 'screenshot', 'execute_command'] as const;
export type ValidationStep = (typeof VALIDATION_STEPS)[number];
export const COMPRESSION_LIBRARIES = ['zstd', 'zlib'] as const;
export type CompressionLibrary = (typeof COMPRESSION_LIBRARIES)[number];

export interface NativeOfferingTerms {
  name: string;
  compress: boolean;
  validate: boolean;
  validationSteps: ValidationStep[];
  allowQuickRestore: boolean;
  allowExtractFile: boolean;
  /** Overrides the zone's backup.chain.size when set. */
  backupChainSize: number | null;
  compressionLibrary: CompressionLibrary;
}

export type NativeOfferingCreated = DomainEvent<'NativeBackupOfferingCreated', NativeOfferingTerms & { offeringId: string; createdAt: string }>;
export type NativeOfferingDeleted = DomainEvent<'NativeBackupOfferingDeleted', { offeringId: string; deletedAt: string }>;
/** An imported offering now uses this native offering (it cannot be deleted until released). */
export type NativeOfferingImported = DomainEvent<'NativeBackupOfferingImported', { offeringId: string; backupOfferingId: string }>;
export type NativeOfferingReleased = DomainEvent<'NativeBackupOfferingReleased', { offeringId: string; backupOfferingId: string }>;
export type NativeOfferingEvent = NativeOfferingCreated | NativeOfferingDeleted | NativeOfferingImported | NativeOfferingReleased;

export type NativeOfferingCommand =
  | { type: 'CreateNativeOffering'; data: NativeOfferingTerms & { offeringId: string; at: Date } }
  | { type: 'DeleteNativeOffering'; data: { offeringId: string; at: Date } }
  | { type: 'LinkImportedOffering'; data: { offeringId: string; backupOfferingId: string } }
  | { type: 'ReleaseImportedOffering'; data: { offeringId: string; backupOfferingId: string } };

export interface NativeOfferingState {
  status: 'absent' | 'active' | 'deleted';
  terms: NativeOfferingTerms | null;
  importedBy: string[];
}

/** One stream per native offering (`nativeOffering-<id>`). */
export const nativeOfferingDecider: Decider<NativeOfferingCommand, NativeOfferingEvent, NativeOfferingState> = {
  initialState: () => ({ status: 'absent', terms: null, importedBy: [] }),

  decide(command, state) {
    switch (command.type) {
      case 'CreateNativeOffering': {
        if (state.status !== 'absent') throw conflict(`native backup offering ${command.data.offeringId} already exists`);
        const { at, ...terms } = command.data;
        return [{ type: 'NativeBackupOfferingCreated', data: { ...terms, createdAt: at.toISOString() } }];
      }
      case 'DeleteNativeOffering': {
        if (state.status !== 'active') throw notFound(`native backup offering ${command.data.offeringId} does not exist`, 'id');
        if (state.importedBy.length > 0) {
          throw inUse(`native backup offering ${state.terms?.name} is imported as backup offering ${state.importedBy.join(', ')}; delete those first`);
        }
        return [{ type: 'NativeBackupOfferingDeleted', data: { offeringId: command.data.offeringId, deletedAt: command.data.at.toISOString() } }];
      }
      case 'LinkImportedOffering': {
        const { offeringId, backupOfferingId } = command.data;
        if (state.importedBy.includes(backupOfferingId)) return [];
        if (state.status !== 'active') throw notFound(`native backup offering ${offeringId} does not exist`, 'externalid');
        return [{ type: 'NativeBackupOfferingImported', data: { offeringId, backupOfferingId } }];
      }
      case 'ReleaseImportedOffering': {
        const { offeringId, backupOfferingId } = command.data;
        if (!state.importedBy.includes(backupOfferingId)) return [];
        return [{ type: 'NativeBackupOfferingReleased', data: { offeringId, backupOfferingId } }];
      }
    }
  },

  evolve(state, event) {
    switch (event.type) {
      case 'NativeBackupOfferingCreated': {
        const { offeringId: _id, createdAt: _at, ...terms } = event.data;
        return { ...state, status: 'active', terms };
      }
      case 'NativeBackupOfferingDeleted':
        return { ...state, status: 'deleted' };
      case 'NativeBackupOfferingImported':
        return { ...state, importedBy: [...state.importedBy, event.data.backupOfferingId] };
      case 'NativeBackupOfferingReleased':
        return { ...state, importedBy: state.importedBy.filter((id) => id !== event.data.backupOfferingId) };
    }
  },
};
