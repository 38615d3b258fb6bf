import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { AGENT_CONFIG_VARIABLES } from './agent-config';
import { CONFIG_VARIABLES } from './config';

/** deploy/strata.env.example is what operators copy: a variable missing there is one they never learn of. */
describe('deploy/strata.env.example', () => {
  const example = readFileSync(resolve(__dirname, '../../../deploy/strata.env.example'), 'utf8');
  const assigned = new Set([...example.matchAll(/^([A-Z][A-Z0-9_]*)=/gm)].map((m) => m[1]));

  it.each([...CONFIG_VARIABLES, ...AGENT_CONFIG_VARIABLES].map((v) => v.name))('assigns %s', (name) => expect(assigned.has(name)).toBe(true));

  it('assigns nothing strata does not read', () => {
    const known = new Set([...CONFIG_VARIABLES, ...AGENT_CONFIG_VARIABLES].map((v) => v.name));
    expect([...assigned].filter((n) => !known.has(n))).toEqual([]);
  });
});
