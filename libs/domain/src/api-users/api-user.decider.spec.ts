import { deciderSpecification } from '../testing/decider-specification';
import { ApiRole, ApiUserCreated, apiUserDecider } from './api-user.decider';

const at = new Date('2026-11-22T10:00:00Z');
const userId = '2d4f6a8c-0e1b-4c3d-9e5f-7a9b1c3d5e01';
const spec = deciderSpecification(apiUserDecider);

const create = (name = 'admin', role: ApiRole = 'Admin') => ({
  type: 'CreateApiUser' as const,
  data: { userId, name, role, apiKey: 'plgWJfZK4gyS3mOMTVmjUVg', encryptedSecretKey: 'v1:aXY:dGFn:ZGF0YQ', at },
});
const created = (name = 'admin', role: ApiRole = 'Admin'): ApiUserCreated => ({
  type: 'ApiUserCreated',
  data: { userId, name, role, apiKey: 'plgWJfZK4gyS3mOMTVmjUVg', encryptedSecretKey: 'v1:aXY:dGFn:ZGF0YQ', createdAt: at.toISOString() },
});

describe('API user decider', () => {
  it('creates an Admin user', () => spec.given([]).when(create()).then([created()]));

  it('creates a User user', () => spec.given([]).when(create('alice', 'User')).then([created('alice', 'User')]));

  it.each(['a', 'alice.smith', 'ops_team-2', 'alice@example.com', '0day', 'a'.repeat(64)])('takes the name %s', (name) =>
    spec.given([]).when(create(name)).then([created(name)]),
  );

  it('refuses to create a user twice', () => spec.given([created()]).when(create()).thenThrows('conflict'));

  it('refuses a second user under the same id even with another name', () => spec.given([created()]).when(create('bob', 'User')).thenThrows('conflict'));

  it.each(['', ' admin', 'admin ', 'al ice', '-admin', '.admin', '_admin', '@admin', 'a/b', 'a:b', 'ädmin', 'a\nb', 'a'.repeat(65)])('refuses the name %j, naming name', (name) =>
    spec.given([]).when(create(name)).thenThrows('invalid', 'name'),
  );

  it.each(['admin', 'ADMIN', 'Root', 'DomainAdmin', ''])('refuses the role %j, naming role', (role) =>
    spec
      .given([])
      .when(create('alice', role as ApiRole))
      .thenThrows('invalid', 'role'),
  );
});
