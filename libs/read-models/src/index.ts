export * from './entities';
export * from './compression-jobs.entity';
export * from './backup-schedules.entity';
export * from './data-source';
export * from './projections';
export * from './projector';
export * from './projection-waiter';
export * from './settings-lookup';
