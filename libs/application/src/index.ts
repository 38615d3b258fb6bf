export * from './ids';
export * from './secret-box';
export * from './command-handler';
export * from './error-codes';
export * from './catalog/backup-offering-view';
export * from './catalog/import-backup-offering.use-case';
export * from './inventory/agent-reports.use-case';
export * from './backups/backup-outcomes.use-case';
