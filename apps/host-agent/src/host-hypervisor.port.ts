import { ReportedDomain } from '@strata/jobs';

/** What the agent needs from the host's hypervisor (implemented with libs/hypervisor). */
export interface HostHypervisor {
  versions(): Promise<{ libvirt: string; qemu: string }>;
  capabilities(): Promise<string[]>;
  /** Every libvirt domain with its file-backed disks (and their virtual sizes). */
  domains(): Promise<ReportedDomain[]>;
}
