import { AppendBatcher } from './append-batcher';

/** An executor whose statements finish only when the test says so. */
function controlledExecutor() {
  const calls: Array<{ inputs: string[]; finish: () => void; fail: (error: Error) => void }> = [];
  const execute = (inputs: string[]) =>
    new Promise<string[]>((resolve, reject) => {
      calls.push({ inputs, finish: () => resolve(inputs.map((i) => `done:${i}`)), fail: reject });
    });
  return { calls, execute };
}

/** Lets a finished statement release its slot (on the next turn of the event loop) and the next one start. */
const flush = async () => {
  for (let i = 0; i < 3; i++) await new Promise((resolve) => setImmediate(resolve));
};

describe('AppendBatcher', () => {
  it('sends an append alone at once when a slot is free', async () => {
    const { calls, execute } = controlledExecutor();
    const batcher = new AppendBatcher(execute, { maxConcurrent: 1, maxEvents: 100 });
    const result = batcher.submit('vm-1', 1, 'a');
    expect(calls.map((c) => c.inputs)).toEqual([['a']]);
    calls[0].finish();
    await expect(result).resolves.toBe('done:a');
  });

  it('groups the appends that wait for a slot, one per stream, ordered by stream', async () => {
    const { calls, execute } = controlledExecutor();
    const batcher = new AppendBatcher(execute, { maxConcurrent: 1, maxEvents: 100 });
    const results = [
      batcher.submit('vm-1', 1, 'first'),
      batcher.submit('vm-3', 1, 'c'),
      batcher.submit('vm-2', 1, 'b'),
      batcher.submit('vm-3', 1, 'c-again'),
    ];
    calls[0].finish();
    await flush();
    expect(calls.map((c) => c.inputs)).toEqual([['first'], ['b', 'c']]);
    calls[1].finish();
    await flush();
    expect(calls[2].inputs).toEqual(['c-again']);
    calls[2].finish();
    await expect(Promise.all(results)).resolves.toEqual(['done:first', 'done:c', 'done:b', 'done:c-again']);
  });

  it('keeps a batch under maxEvents, but sends an oversized append alone', async () => {
    const { calls, execute } = controlledExecutor();
    const batcher = new AppendBatcher(execute, { maxConcurrent: 1, maxEvents: 5 });
    void batcher.submit('vm-0', 1, 'busy');
    void batcher.submit('vm-1', 3, 'three');
    void batcher.submit('vm-2', 3, 'three-more');
    void batcher.submit('vm-3', 9, 'nine');
    calls[0].finish();
    await flush();
    expect(calls[1].inputs).toEqual(['three']);
    calls[1].finish();
    await flush();
    expect(calls[2].inputs).toEqual(['three-more']);
    calls[2].finish();
    await flush();
    expect(calls[3].inputs).toEqual(['nine']);
  });

  it('lets callers resolved by a statement resubmit before the slot frees, so they leave together', async () => {
    const { calls, execute } = controlledExecutor();
    const batcher = new AppendBatcher(execute, { maxConcurrent: 1, maxEvents: 100 });
    const writer = async (stream: string) => {
      await batcher.submit(stream, 1, `${stream}#1`);
      await batcher.submit(stream, 1, `${stream}#2`);
    };
    const writers = [writer('vm-1'), writer('vm-2'), writer('vm-3')];
    expect(calls.map((c) => c.inputs)).toEqual([['vm-1#1']]);
    calls[0].finish();
    await flush();
    expect(calls[1].inputs).toEqual(['vm-1#2', 'vm-2#1', 'vm-3#1']);
    calls[1].finish();
    await flush();
    expect(calls[2].inputs).toEqual(['vm-2#2', 'vm-3#2']);
    calls[2].finish();
    await Promise.all(writers);
  });

  it('runs up to maxConcurrent statements at once', () => {
    const { calls, execute } = controlledExecutor();
    const batcher = new AppendBatcher(execute, { maxConcurrent: 2, maxEvents: 100 });
    ['a', 'b', 'c'].forEach((x, i) => void batcher.submit(`vm-${i}`, 1, x));
    expect(calls.map((c) => c.inputs)).toEqual([['a'], ['b']]);
  });

  it('retries each append of a failed batch alone, so only the bad one fails', async () => {
    const execute = jest.fn(async (inputs: string[]) => {
      if (inputs.includes('bad')) throw new Error(`statement failed for ${inputs.join(',')}`);
      return inputs.map((i) => `done:${i}`);
    });
    const { calls, execute: blocking } = controlledExecutor();
    let first = true;
    const batcher = new AppendBatcher<string, string>(
      (inputs) => {
        if (first) {
          first = false;
          return blocking(inputs);
        }
        return execute(inputs);
      },
      { maxConcurrent: 1, maxEvents: 100 },
    );
    const busy = batcher.submit('vm-0', 1, 'busy');
    const good = batcher.submit('vm-1', 1, 'good');
    const bad = batcher.submit('vm-2', 1, 'bad');
    calls[0].finish();
    await expect(busy).resolves.toBe('done:busy');
    await expect(good).resolves.toBe('done:good');
    await expect(bad).rejects.toThrow('statement failed for bad');
    expect(execute.mock.calls.map(([inputs]) => inputs)).toEqual([['good', 'bad'], ['good'], ['bad']]);
  });
});
