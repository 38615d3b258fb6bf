import type { ApiUser, ApiUserDirectory } from './command-definition';

/** A fixed set of users, for tests and single-operator setups; the real directory reads the database. */
export class StaticUserDirectory implements ApiUserDirectory {
  private readonly byKey: Map<string, ApiUser>;

  constructor(users: readonly ApiUser[]) {
    this.byKey = new Map(users.map((u) => [u.apiKey, u]));
  }

  async findByApiKey(apiKey: string): Promise<ApiUser | null> {
    return this.byKey.get(apiKey) ?? null;
  }
}
