export * from './management-jobs';
export * from './host-jobs';
