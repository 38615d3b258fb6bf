// Tiers by file name: *.spec.ts needs nothing, *.int-spec.ts needs PostgreSQL/Redis (and later libvirt),
// test/e2e/** starts the whole system.
const moduleNameMapper = {
  '^@strata/(domain|event-store|read-models|config|jobs|hypervisor|application)$': '<rootDir>/libs/$1/src',
  '^@strata/api$': '<rootDir>/apps/api/src',
};
const base = {
  preset: 'ts-jest',
  testEnvironment: 'node',
  moduleNameMapper,
  transform: { '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.json' }] },
};
module.exports = {
  projects: [
    { ...base, displayName: 'unit', testMatch: ['<rootDir>/{apps,libs,bench}/**/*.spec.ts'] },
    { ...base, displayName: 'int', testMatch: ['<rootDir>/{apps,libs,test}/**/*.int-spec.ts'], setupFilesAfterEnv: ['<rootDir>/test/support/jest-timeout.int.ts'] },
    { ...base, displayName: 'e2e', testMatch: ['<rootDir>/test/e2e/**/*.e2e-spec.ts'], setupFilesAfterEnv: ['<rootDir>/test/support/jest-timeout.e2e.ts'] },
  ],
};
