export * from './management-jobs';
