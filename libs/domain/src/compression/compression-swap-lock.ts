import { DomainEvent } from '../decider';
import { BackupCompressionEvent } from './backup-compression.events';

/**
 * The swap lock of a VM's chain: backups whose compressed side files a Finalizing attempt is renaming
 * over the originals right now (backup id -> compression job id). While it is not empty no new backup of
 * the VM may start (the backup chain decider refuses it), so no backup ever begins on a file mid-swap.
 * Kept in the backup chain state; this module only knows the compression events (no import of the chain
 * decider, which imports this).
 */
export type SwapLock = Readonly<Record<string, string>>;

export function swapLockAfter(lock: SwapLock | undefined, event: DomainEvent): SwapLock {
  const current = lock ?? {};
  const e = event as BackupCompressionEvent;
  const release = (backupId: string, jobId: string): SwapLock => {
    if (current[backupId] !== jobId) return current;
    const { [backupId]: _released, ...rest } = current;
    return rest;
  };
  switch (e.type) {
    case 'CompressionStarted':
      return e.data.type === 'Finalizing' ? { ...current, [e.data.backupId]: e.data.jobId } : current;
    case 'CompressionFinalized':
      return release(e.data.backupId, e.data.jobId);
    case 'CompressionAttemptFailed':
    case 'CompressionJobStopped':
      return e.data.type === 'Finalizing' ? release(e.data.backupId, e.data.jobId) : current;
    default:
      return current;
  }
}
