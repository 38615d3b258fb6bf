import { EventStore1763800000000 } from './1763800000000-event-store';
import { ReadModels1763800001000 } from './1763800001000-read-models';
import { InventoryAndBackups1763900000000 } from './1763900000000-inventory-and-backups';
import { Restores1764000000000 } from './1764000000000-restores';
import { CompressionJobs1764100000000 } from './1764100000000-compression-jobs';
import { ChainLifecycle1764200000000 } from './1764200000000-chain-lifecycle';
import { CompressionSideFileDiscards1764250000000 } from './1764250000000-compression-side-file-discards';

/** Every migration, in order. Listed explicitly so compiled and ts-jest runs see the same set. */
export const MIGRATIONS = [EventStore1763800000000, ReadModels1763800001000, InventoryAndBackups1763900000000, Restores1764000000000, CompressionJobs1764100000000, ChainLifecycle1764200000000, CompressionSideFileDiscards1764250000000];
