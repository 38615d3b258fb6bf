import { Decider, DomainEvent } from '../decider';
import { conflict, invalid } from '../domain-error';

export const API_ROLES = ['Admin', 'User'] as const;
export type ApiRole = (typeof API_ROLES)[number];

/** The secret key is signed with (HMAC), so it cannot be hashed: it is stored encrypted by the application. */
export type ApiUserCreated = DomainEvent<
  'ApiUserCreated',
  { userId: string; name: string; role: ApiRole; apiKey: string; encryptedSecretKey: string; createdAt: string }
>;
export type ApiUserEvent = ApiUserCreated;

export type ApiUserCommand = {
  type: 'CreateApiUser';
  data: { userId: string; name: string; role: ApiRole; apiKey: string; encryptedSecretKey: string; at: Date };
};

export interface ApiUserState {
  exists: boolean;
}

/** One stream per API user (`apiUser-<id>`). */
export const apiUserDecider: Decider<ApiUserCommand, ApiUserEvent, ApiUserState> = {
  initialState: () => ({ exists: false }),
  decide(command, state) {
    const { at, ...data } = command.data;
    if (state.exists) throw conflict(`API user ${data.userId} already exists`);
    if (!/^[a-zA-Z0-9][a-zA-Z0-9_.@-]{0,63}$/.test(data.name)) throw invalid('a user name is 1-64 letters, digits, "_", ".", "@" or "-"', 'name');
    if (!API_ROLES.includes(data.role)) throw invalid('role is Admin or User', 'role');
    return [{ type: 'ApiUserCreated', data: { ...data, createdAt: at.toISOString() } }];
  },
  evolve: () => ({ exists: true }),
};
