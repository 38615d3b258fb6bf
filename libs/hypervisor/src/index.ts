export * from './errors';
export * from './process-runner';
export * from './die-with-parent-runner';
export * from './xml';
export * from './libvirt-xml';
export * from './virsh.driver';
export * from './qemu-img.driver';
export * from './mount.driver';
