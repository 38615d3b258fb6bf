import { Decider, DomainEvent } from '../decider';
import { conflict, inUse, notFound } from '../domain-error';

export interface ImportTerms {
  name: string;
  description: string;
  zoneId: string;
  nativeOfferingId: string;
  allowUserDrivenBackups: boolean;
  /** Pinned by the operator, or null: the import picks the zone's repository with most free space. */
  repositoryId: string | null;
}

export type BackupOfferingImportRequested = DomainEvent<'BackupOfferingImportRequested', ImportTerms & { offeringId: string; jobId: string; requestedAt: string }>;
export type BackupOfferingImported = DomainEvent<'BackupOfferingImported', { offeringId: string; jobId: string; repositoryId: string; importedAt: string }>;
export type BackupOfferingImportFailed = DomainEvent<'BackupOfferingImportFailed', { offeringId: string; jobId: string; reason: string; failedAt: string }>;
export type BackupOfferingDeleted = DomainEvent<'BackupOfferingDeleted', { offeringId: string; nativeOfferingId: string; deletedAt: string }>;
export type BackupOfferingEvent = BackupOfferingImportRequested | BackupOfferingImported | BackupOfferingImportFailed | BackupOfferingDeleted;

export type BackupOfferingCommand =
  | { type: 'RequestImport'; data: ImportTerms & { offeringId: string; jobId: string; at: Date } }
  | { type: 'CompleteImport'; data: { offeringId: string; repositoryId: string; at: Date } }
  | { type: 'FailImport'; data: { offeringId: string; reason: string; at: Date } }
  | { type: 'DeleteBackupOffering'; data: { offeringId: string; at: Date } };

export interface BackupOfferingState {
  status: 'absent' | 'importing' | 'active' | 'failed' | 'deleted';
  offeringId: string | null;
  jobId: string | null;
  terms: ImportTerms | null;
  repositoryId: string | null;
  failureReason: string | null;
  /** VMs assigned to the offering; an offering in use cannot be deleted. */
  assignedVms: string[];
}

/**
 * One stream per imported offering (`backupOffering-<id>`). Importing is asynchronous: the request is
 * recorded here, the import job links the native offering (so that it cannot be deleted under us) and
 * then completes or fails the import.
 */
export const backupOfferingDecider: Decider<BackupOfferingCommand, BackupOfferingEvent, BackupOfferingState> = {
  initialState: () => ({ status: 'absent', offeringId: null, jobId: null, terms: null, repositoryId: null, failureReason: null, assignedVms: [] }),

  decide(command, state) {
    switch (command.type) {
      case 'RequestImport': {
        if (state.status !== 'absent') throw conflict(`backup offering ${command.data.offeringId} already exists`);
        const { at, ...rest } = command.data;
        return [{ type: 'BackupOfferingImportRequested', data: { ...rest, requestedAt: at.toISOString() } }];
      }
      case 'CompleteImport': {
        if (state.status === 'active') return [];
        if (state.status !== 'importing') throw conflict(`backup offering ${command.data.offeringId} is not being imported`);
        return [
          {
            type: 'BackupOfferingImported',
            data: { offeringId: command.data.offeringId, jobId: state.jobId!, repositoryId: command.data.repositoryId, importedAt: command.data.at.toISOString() },
          },
        ];
      }
      case 'FailImport': {
        if (state.status === 'failed') return [];
        if (state.status !== 'importing') throw conflict(`backup offering ${command.data.offeringId} is not being imported`);
        return [
          {
            type: 'BackupOfferingImportFailed',
            data: { offeringId: command.data.offeringId, jobId: state.jobId!, reason: command.data.reason, failedAt: command.data.at.toISOString() },
          },
        ];
      }
      case 'DeleteBackupOffering': {
        if (state.status !== 'active' && state.status !== 'failed') {
          if (state.status === 'importing') throw inUse(`backup offering ${command.data.offeringId} is still being imported`);
          throw notFound(`backup offering ${command.data.offeringId} does not exist`, 'id');
        }
        if (state.assignedVms.length > 0) {
          throw inUse(`backup offering ${state.terms?.name} is assigned to ${state.assignedVms.length} virtual machine(s); remove them from it first`);
        }
        return [
          {
            type: 'BackupOfferingDeleted',
            data: { offeringId: command.data.offeringId, nativeOfferingId: state.terms!.nativeOfferingId, deletedAt: command.data.at.toISOString() },
          },
        ];
      }
    }
  },

  evolve(state, event) {
    switch (event.type) {
      case 'BackupOfferingImportRequested': {
        const { offeringId, jobId, requestedAt: _at, ...terms } = event.data;
        return { ...state, status: 'importing', offeringId, jobId, terms };
      }
      case 'BackupOfferingImported':
        return { ...state, status: 'active', repositoryId: event.data.repositoryId };
      case 'BackupOfferingImportFailed':
        return { ...state, status: 'failed', failureReason: event.data.reason };
      case 'BackupOfferingDeleted':
        return { ...state, status: 'deleted' };
    }
  },
};
