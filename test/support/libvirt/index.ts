export * from './exec';
export * from './test-domain';
export * from './guest-writes';
export * from './expected-image';
export * from './cleanup';
