export * from './management-jobs';
export * from './host-jobs';
export * from './compression-jobs';
export * from './removal-jobs';
export * from './host-liveness';
