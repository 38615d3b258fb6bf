import { nextFreeTarget } from './restore-executor';

describe('nextFreeTarget', () => {
  it('takes the first virtio device name the domain does not use', () => {
    expect(nextFreeTarget(['vda'])).toBe('vdb');
    expect(nextFreeTarget(['vda', 'vdc', 'sda'])).toBe('vdb');
    expect(nextFreeTarget([])).toBe('vda');
  });

  it('goes on past vdz the way libvirt names devices (vdaa, vdab, ...)', () => {
    const used = Array.from({ length: 26 }, (_, i) => `vd${String.fromCharCode(97 + i)}`);
    expect(nextFreeTarget(used)).toBe('vdaa');
    expect(nextFreeTarget([...used, 'vdaa'])).toBe('vdab');
  });
});
