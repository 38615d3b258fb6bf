import type { DomainEvent } from '../decider';
import type { BackupChainState } from './backup-chain.decider';
import { BACKUP_REMOVAL_EVENT_TYPES, BackupRemovalEvent } from './backup-removal.events';

/**
 * What the backup chain decider knows about deletions (kept in its state, folded by the hook below):
 * which backups are Removed (no new restore of them), and the removal that runs now (its files change:
 * no backup of the VM starts and no restore reads them meanwhile).
 */
export interface ChainRemovals {
  removed: Record<string, true>;
  running: { backupId: string; affected: string[] } | null;
}

export const noRemovals = (): ChainRemovals => ({ removed: {}, running: null });

export function removalsOf(state: BackupChainState): ChainRemovals {
  return state.removal ?? noRemovals();
}

const isRemovalEvent = (e: DomainEvent): e is BackupRemovalEvent => (BACKUP_REMOVAL_EVENT_TYPES as readonly string[]).includes(e.type);

/**
 * The chain state after a removal event; any other event leaves it as it is.
 *
 * - A removal that starts takes the backup out of the current chain (`state.chain`): dropping the chain's
 *   newest backup makes its parent the tip again, so the next incremental is taken from the parent's
 *   checkpoint (whose bitmap has recorded every write since, including those before the dropped backup)
 *   into a file backed by the parent's file; merging a backup out of the middle (or the base) shortens the
 *   chain by one, which is what `backup.chain.size` counts.
 * - A merge gives the children the removed backup's parent.
 * - An expunged backup is forgotten.
 */
export function chainAfterRemovalEvent(state: BackupChainState, event: DomainEvent): BackupChainState {
  if (!isRemovalEvent(event)) return state;
  const r = removalsOf(state);
  switch (event.type) {
    case 'BackupDeletionRequested':
      return { ...state, removal: { ...r, removed: { ...r.removed, [event.data.backupId]: true } } };
    case 'BackupRemovalStarted': {
      const d = event.data;
      const chain = state.chain.filter((l) => l.backupId !== d.backupId);
      const ended = state.chain.length > 0 && chain.length === 0;
      return {
        ...state,
        chain,
        ...(ended && { endedBecause: 'parent failed or missing' as const }),
        removal: { ...r, running: { backupId: d.backupId, affected: [d.backupId, ...d.intoBackupIds] } },
      };
    }
    case 'BackupsMerged': {
      const completed = { ...state.completed };
      for (const child of event.data.intoBackupIds) if (completed[child]) completed[child] = { ...completed[child], parentBackupId: event.data.newParentBackupId };
      return { ...state, completed };
    }
    case 'BackupExpunged': {
      const id = event.data.backupId;
      const { [id]: _gone, ...completed } = state.completed;
      const { [id]: _removed, ...removed } = r.removed;
      const chain = state.chain.filter((l) => l.backupId !== id);
      const ended = state.chain.length > 0 && chain.length === 0;
      return { ...state, completed, chain, ...(ended && { endedBecause: 'parent failed or missing' as const }), removal: { removed, running: r.running?.backupId === id ? null : r.running } };
    }
    case 'BackupRemovalFailed':
      return { ...state, removal: { ...r, running: r.running?.backupId === event.data.backupId ? null : r.running } };
  }
}

/** Why a new backup of the VM cannot start now because of a removal, or null. */
export function removalBlocksBackup(state: BackupChainState): string | null {
  const running = removalsOf(state).running;
  return running ? `backup ${running.backupId} is being removed (its files or its children's change); try again in a few seconds` : null;
}

/** Why a restore of `backupId` cannot start now because of deletions, or null. */
export function removalBlocksRestore(state: BackupChainState, backupId: string, reads: string[]): string | null {
  const r = removalsOf(state);
  if (r.removed[backupId]) return `backup ${backupId} is Removed (deleted); it cannot be restored`;
  if (r.running && reads.some((id) => r.running!.affected.includes(id))) return `backup ${r.running.backupId}, which this restore reads, is being merged or removed; try again when that is done`;
  return null;
}

/** The running removal, in words, when it changes `backupId`'s files. */
export function removalReaders(state: BackupChainState, backupId: string): string[] {
  const running = removalsOf(state).running;
  return running && running.affected.includes(backupId) ? [`backup ${running.backupId} is being merged or removed`] : [];
}
