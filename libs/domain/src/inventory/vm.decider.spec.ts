import { deciderSpecification } from '../testing/decider-specification';
import { VmCommand, vmDecider, VmEvent, VmVolume } from './vm.decider';

const at = new Date('2026-11-22T10:00:00Z');
const spec = deciderSpecification(vmDecider);
const volumes: VmVolume[] = [{ volumeId: 'v1', target: 'vda', path: '/images/a.qcow2', format: 'qcow2', virtualSizeBytes: 1 << 30 }];
const discovered = (hostId: string, state: 'Running' | 'Stopped'): VmEvent => ({ type: 'VmDiscovered', data: { vmId: 'vm-1', name: 'web', hostId, zoneId: 'z1', state, volumes, at: at.toISOString() } });
const report = (hostId: string, state: 'Running' | 'Stopped', over: Partial<VmVolume> = {}): VmCommand => ({
  type: 'ReportVm',
  data: { vmId: 'vm-1', name: 'web', hostId, zoneId: 'z1', state, volumes: [{ ...volumes[0], ...over }], at },
});

describe('vm decider: reports from the hosts', () => {
  it('a VM that runs on another host has moved there', () => {
    spec.given([discovered('h1', 'Stopped')]).when(report('h2', 'Running')).then([{ type: 'VmStateChanged', data: { vmId: 'vm-1', state: 'Running', hostId: 'h2', at: at.toISOString() } }]);
    spec.given([discovered('h1', 'Running')]).when(report('h2', 'Running')).then([{ type: 'VmStateChanged', data: { vmId: 'vm-1', state: 'Running', hostId: 'h2', at: at.toISOString() } }]);
  });

  it('a stopped VM defined on another host (moved while off) is listed there', () => {
    spec.given([discovered('h1', 'Stopped')]).when(report('h2', 'Stopped')).then([{ type: 'VmStateChanged', data: { vmId: 'vm-1', state: 'Stopped', hostId: 'h2', at: at.toISOString() } }]);
  });

  it('a shut-off definition left on the old host neither takes a running VM back nor changes its disks', () => {
    const moved: VmEvent = { type: 'VmStateChanged', data: { vmId: 'vm-1', state: 'Running', hostId: 'h2', at: at.toISOString() } };
    spec.given([discovered('h1', 'Stopped'), moved]).when(report('h1', 'Stopped', { path: '/old/a.qcow2' })).thenNothingHappens();
    // The VM's own host still decides: stopped there, it is Stopped.
    spec.given([discovered('h1', 'Stopped'), moved]).when(report('h2', 'Stopped')).then([{ type: 'VmStateChanged', data: { vmId: 'vm-1', state: 'Stopped', hostId: 'h2', at: at.toISOString() } }]);
  });
});
